"""Paired baselines (``baseline: {mode: paired}``): one default-derivative twin per tuned trial.

A *tuned* trial is one whose ReLU-family derivatives (``relu_prime_zero``,
``relu6_prime_six``) differ from PyTorch's (0; LeakyReLU'(0): ``negative_slope``). Its twin
has the same parameters except those derivatives, at PyTorch's values, and the same seed, so
it starts from the same initial weights and sees the same batch order (the engine derives
both from the seed). A trial with PyTorch's derivatives already gets no twin.

Seeds: in paired mode every search trial trains with its own seed, the training seed
(``train: seed``, default 0) plus the number of the trial (of the original trial when it is
a retry: Optuna's and :func:`hpo.study.budget.requeue` record it as system attr
``failed_trial``), so pairs are independent replicates and a retry keeps its seed without
any extra write. The seed is recorded as user attr ``hpo_seed``.

Who enqueues a twin, and only once: the worker running the tuned trial, after its
parameters are sampled and before training (so the twin can run on another worker at the
same time, and it exists before its tuned trial can finish: see the budget proof in
:mod:`hpo.worker.loop`). Re-running ``hpo create``/``hpo run`` and extra workers enqueue
nothing. A retry of a tuned trial looks for a twin of any trial of its lineage (its own
number and the ``retry_history`` of the trials it repeats) and enqueues none when one
exists. A duplicate could then only come from two processes running the same lineage at
once (a worker frozen for longer than the heartbeat grace, whose trial was re-queued); the
workers discard such a duplicate when they pop it (:func:`hpo.study.budget.twin_rank`),
so at most one twin per lineage ever runs.

User attributes: the twin has ``hpo_baseline=True``, ``hpo_seed`` and ``hpo_twin_of`` (the
number of the tuned trial that enqueued it); the tuned trial has ``hpo_twin`` (the
``hpo_twin_of`` of its twin: its own number, or an earlier try's when it is a retry).
Twins are never pruned: a pruned twin would leave its completed tuned trial unpaired.
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
