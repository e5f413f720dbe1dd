"""Study configuration: a YAML file (or a dict) becomes a frozen, validated :class:`StudyConfig`.

Import the public names from here. Modules, each importing only those listed before it:
``yamlfile`` (YAML, the ``Checker``), ``records`` (config <-> stored JSON), ``search_space``,
``samplers`` (sampler/pruner sections, checks, factories), ``modes`` (objective, probe,
paired baselines), ``models`` (builds a named model once), ``schema`` (a whole document),
``study`` (:class:`StudyConfig`, :func:`load_study_config`); ``reproduce`` (published experiments).
Loading a study file imports neither SQLAlchemy nor the storage layer (tests/test_layout.py).
"""

from __future__ import annotations

from hpo.config.modes import BASELINE_MODES, METRICS, OBJECTIVES
from hpo.config.samplers import (
    PRUNER_CLASSES,
    SAMPLER_CLASSES,
    PrunerConfig,
    SamplerConfig,
    make_pruner,
    make_sampler,
)
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
