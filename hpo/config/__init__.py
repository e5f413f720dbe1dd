"""Study configuration: a YAML file becomes a frozen, validated ``StudyConfig``.

``load_study_config(path)`` is the entry point; the public names are re-exported here.
Modules: :mod:`.yamlfile` (YAML reading, error reporting), :mod:`.search_space` (search
space -> Optuna distributions), :mod:`.samplers`, :mod:`.modes` (objective, probe and
baseline rules), :mod:`.models` (a model built once, at load), :mod:`.schema` (a whole
document checked), :mod:`.study` (the typed sections). Loading a study file imports
neither SQLAlchemy nor the storage layer.
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
