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

The names load on first use (PEP 562), so a caller that needs one small module (say
``search_space``) does not import the validator and the samplers with it, and this file
never takes part in an import cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "modes": ("BASELINE_MODES", "METRICS", "OBJECTIVES"),
    "samplers": ("PRUNER_CLASSES", "SAMPLER_CLASSES", "make_pruner", "make_sampler"),
    "search_space": (
        "DERIVATIVES", "expand_baseline", "parse_search_space", "pytorch_derivative",
        "spec_default",
    ),
    "study": (
        "CONFIG_FORMAT", "BaselineConfig", "HeartbeatConfig", "ProbeConfig", "PrunerConfig",
        "SamplerConfig", "StudyConfig", "load_study_config",
    ),
    "yamlfile": ("read_yaml",),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
