"""Study configuration: a YAML file becomes a frozen, validated :class:`StudyConfig`.

Import the public names from here. The modules, each importing only the ones before it
(plus :mod:`hpo.errors` and the engine's ``TrainSpec``; ``samplers`` names ``study``'s
section types in annotations only):

* ``yamlfile``: reading YAML (duplicate keys rejected) and the error-reporting ``Checker``;
* ``search_space``: the YAML search space -> Optuna distributions, baseline expansion;
* ``samplers``: sampler and pruner names and options -> checked Optuna objects;
* ``modes``: objective, probe and paired-baseline rules;
* ``models``: builds a torchvision or import-path model once, so a bad one fails at load;
* ``schema``: validation of a whole study document;
* ``study``: the typed sections, :class:`StudyConfig` and :func:`load_study_config`.

Loading a study file imports neither SQLAlchemy nor the storage layer
(``tests/test_layout.py`` checks it).
"""

from __future__ import annotations

from hpo.config.modes import BASELINE_MODES, METRICS, OBJECTIVES
from hpo.config.samplers import PRUNER_CLASSES, SAMPLER_CLASSES, make_pruner, make_sampler
from hpo.config.search_space import (
    DERIVATIVES,
    expand_baseline,
    parse_search_space,
    pytorch_derivative,
    spec_default,
)
from hpo.config.study import (
    CONFIG_FORMAT,
    BaselineConfig,
    HeartbeatConfig,
    ProbeConfig,
    PrunerConfig,
    SamplerConfig,
    StudyConfig,
    load_study_config,
)
from hpo.config.yamlfile import read_yaml

__all__ = [
    "BASELINE_MODES",
    "CONFIG_FORMAT",
    "DERIVATIVES",
    "METRICS",
    "OBJECTIVES",
    "PRUNER_CLASSES",
    "SAMPLER_CLASSES",
    "BaselineConfig",
    "HeartbeatConfig",
    "ProbeConfig",
    "PrunerConfig",
    "SamplerConfig",
    "StudyConfig",
    "expand_baseline",
    "load_study_config",
    "make_pruner",
    "make_sampler",
    "parse_search_space",
    "pytorch_derivative",
    "read_yaml",
    "spec_default",
]
