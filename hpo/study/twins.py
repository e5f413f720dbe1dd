"""Paired baselines (``baseline: {mode: paired}``): one default-derivative twin per tuned trial.

A tuned trial (ReLU-family derivatives other than PyTorch's) gets a twin with PyTorch's
derivatives, the same other parameters and the same seed (the training seed plus the
original trial's number). The worker running the tuned trial enqueues it once, before
training; duplicates are discarded when popped. Twins are never pruned.
See docs/design.md#paired-baselines-one-twin-per-tuned-trial.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from hpo.config.search_space import DERIVATIVES, pytorch_derivative, spec_default

if TYPE_CHECKING:
    from hpo.config.study import StudyConfig
    from hpo.engine.spec import TrainSpec

__all__ = [
    "TWIN_ATTR",
    "TWIN_OF_ATTR",
    "ensure_twin",
    "is_paired",
    "is_tuned",
    "is_twin",
    "lineage_root",
    "paired_seed",
    "system_attrs",
    "twin_params",
]

log = logging.getLogger(__name__)

TWIN_OF_ATTR = "hpo_twin_of"  # on a twin: the number of the tuned trial that enqueued it
TWIN_ATTR = "hpo_twin"  # on a tuned trial: the hpo_twin_of value of its twin


def is_paired(cfg: StudyConfig) -> bool:
    """Whether the study runs a twin for each tuned trial."""
    return cfg.baseline is not None and cfg.baseline.paired


def is_twin(trial: FrozenTrial) -> bool:
    """Whether a stored trial is a twin (its retries are twins too)."""
    return trial.user_attrs.get(TWIN_OF_ATTR) is not None


def is_tuned(spec: TrainSpec) -> bool:
    """Whether a derivative at a kink differs from PyTorch's (``None`` means PyTorch's)."""
    settings = spec.to_dict()
    return any(
        getattr(spec, name) is not None
        and float(getattr(spec, name)) != pytorch_derivative(name, settings)
        for name in DERIVATIVES
    )


def lineage_root(number: int, system_attrs: Mapping[str, Any]) -> int:
    """The number of the original trial that trial ``number`` repeats (its own if none)."""
    return int(system_attrs.get("failed_trial", number))


def system_attrs(trial: optuna.trial.BaseTrial) -> Mapping[str, Any]:
    """A trial's system attributes (Optuna 5's ``Trial`` no longer exposes them; read from
    the study's trials, one read through Optuna's trial cache)."""
    if isinstance(trial, optuna.Trial):
        for t in trial.study.get_trials(deepcopy=False):
            if t.number == trial.number:
                return t.system_attrs
        return {}
    return getattr(trial, "system_attrs", None) or {}


def paired_seed(cfg: StudyConfig, number: int, sys_attrs: Mapping[str, Any]) -> int:
    """The seed of search trial ``number`` in a paired study: training seed + lineage root."""
    base = cfg.fixed.get("seed")
    return int(spec_default("seed") if base is None else base) + lineage_root(number, sys_attrs)


def twin_params(cfg: StudyConfig, params: Mapping[str, Any]) -> dict[str, Any]:
    """The tuned trial's parameters with the searched derivatives at PyTorch's values."""
    settings = {**cfg.fixed, **params}
    out = dict(params)
    for name in DERIVATIVES:
        if name in cfg.search_space:
            out[name] = pytorch_derivative(name, settings)
    return out


def ensure_twin(
    trial: optuna.Trial,
    cfg: StudyConfig,
    params: Mapping[str, Any],
    seed: int,
    sys_attrs: Mapping[str, Any],
) -> int:
    """Enqueue the twin of the running tuned ``trial`` unless its lineage already has one.

    Returns:
        The twin's ``hpo_twin_of`` (to record as the tuned trial's ``hpo_twin``).
    """
    study = trial.study
    lineage = {trial.number, *sys_attrs.get("retry_history", [])}
    for t in study.get_trials(deepcopy=False):
        key = t.user_attrs.get(TWIN_OF_ATTR)
        if key in lineage:
            if t.user_attrs.get("hpo_seed") != seed:  # pragma: no cover - seeds are derived
                log.warning("trial %d: its twin %d has seed %r, not %d", trial.number, t.number,
                            t.user_attrs.get("hpo_seed"), seed)
            log.debug("trial %d: twin %d (of trial %d) exists", trial.number, t.number, key)
            return int(key)
    study.enqueue_trial(
        twin_params(cfg, params),
        user_attrs={"hpo_baseline": True, "hpo_seed": seed, TWIN_OF_ATTR: trial.number},
    )
    log.info("trial %d: enqueued its twin (PyTorch's derivatives, seed %d)", trial.number, seed)
    return trial.number
