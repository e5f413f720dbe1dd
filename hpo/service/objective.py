"""Trial -> engine run -> user attributes.

:class:`Objective` is the callable a worker hands its trials to. It turns the trial's
parameters into a :class:`~hpo.engine.spec.TrainSpec` through the study config, trains it
(reporting the validation accuracy after every epoch so the pruner can stop it), records
what the run measured as trial user attributes and returns the study's metric.

A diverged run (NaN or infinite loss) is recorded with ``diverged=True`` and its
``divergence_reason`` and then ends as **PRUNED**, not FAIL: divergence is an outcome of
the hyperparameters (the same parameters and seed diverge again), so it counts against the
budget like any finished trial, is never retried, and the samplers treat it as worse than
every completed trial instead of ignoring that region of the search space.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

if TYPE_CHECKING:
    from hpo.config import StudyConfig
    from hpo.engine.spec import TrainResult, TrainSpec

__all__ = ["Objective", "TrainFn", "record_result", "set_user_attrs", "suggest_params"]

log = logging.getLogger(__name__)

#: ``train(spec, *, data_dir=..., on_epoch_end=...) -> TrainResult`` (hpo.engine.train.train).
TrainFn = Callable[..., "TrainResult"]

# The metrics the objective can return (StudyConfig.metric), read from the result.
_METRICS = ("val_accuracy",)


def suggest_params(
    trial: optuna.trial.BaseTrial, space: Mapping[str, BaseDistribution]
) -> dict[str, Any]:
    """Ask ``trial`` for one value per search-space entry.

    A trial popped from the queue (a baseline or a retried trial) already holds its values,
    and Optuna returns those instead of sampling.
    """
    params: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, FloatDistribution):
            params[name] = trial.suggest_float(
                name, dist.low, dist.high, step=dist.step, log=dist.log
            )
        elif isinstance(dist, IntDistribution):
            params[name] = trial.suggest_int(
                name, dist.low, dist.high, step=dist.step, log=dist.log
            )
        elif isinstance(dist, CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, dist.choices)
        else:  # pragma: no cover - the config only builds the three kinds above
            raise TypeError(f"unsupported distribution for {name!r}: {dist!r}")
    return params


def record_result(
    trial: optuna.trial.BaseTrial, result: TrainResult, inputs: Mapping[str, Any] | None = None
) -> None:
    """Store what a finished (or diverged) run measured as trial user attributes.

    ``inputs`` (the seed and baseline tag) are written in the same storage transaction.
    """
    attrs: dict[str, Any] = {
        **(inputs or {}),
        "test_accuracy": result.test_accuracy,
        "val_accuracy_per_epoch": list(result.val_accuracy),
        "kink_hits": int(result.kink_hits),
        "kink_hits_per_epoch": [int(h) for h in result.kink_hits_per_epoch],
        "configured_activations": int(result.configured_activations),
        "diverged": bool(result.diverged),
        "precision": result.precision,
        "device": result.device,
        "torch_version": result.torch_version,
        "wall_time_s": float(result.wall_time_s),
        "samples_per_second": float(result.samples_per_second),
        "params_sha256": result.params_sha256,
    }
    if result.diverged:
        attrs["divergence_reason"] = result.divergence_reason
    set_user_attrs(trial, {key: _json_safe(value) for key, value in attrs.items()})


def set_user_attrs(trial: optuna.trial.BaseTrial, attrs: Mapping[str, Any]) -> None:
    """Set several user attributes, in one transaction when the trial lives in an RDB storage.

    Optuna commits every ``set_user_attr`` on its own; with a dozen attributes per trial and
    several workers on one SQLite file those commits were most of the storage time per
    trial. This uses RDBStorage's own per-attribute write inside one session, and falls back
    to ``set_user_attr`` for any other trial or storage.
    """
    backend = _rdb_backend(trial)
    if backend is not None:
        try:
            from optuna.storages._rdb import models
            from optuna.storages._rdb.storage import _create_scoped_session
        except ImportError:  # pragma: no cover - a future Optuna moved its internals
            backend = None
    if backend is None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    with _create_scoped_session(backend.scoped_session, True) as session:
        for key, value in attrs.items():
            backend._set_trial_attr_without_commit(
                session, models.TrialUserAttributeModel, trial._trial_id, key, value
            )


def _rdb_backend(trial: optuna.trial.BaseTrial) -> optuna.storages.RDBStorage | None:
    if not isinstance(trial, optuna.Trial):
        return None
    storage = trial.storage
    storage = getattr(storage, "_backend", storage)  # optuna wraps it in a _CachedStorage
    if isinstance(storage, optuna.storages.RDBStorage) and hasattr(
        storage, "_set_trial_attr_without_commit"
    ):
        return storage
    return None


class Objective:
    """Train one trial of a study.

    Args:
        cfg: The study's configuration (the one stored in the study, so every worker on
            every machine trains the same thing).
        train_fn: The training function; default :func:`hpo.engine.train.train`. Tests and
            benchmarks inject a fake.
        data_dir: Where the datasets live; ``None`` lets the engine use ``HPO_DATA_DIR``.
            The engine caches the raw data per process, so a worker loads it once.
    """

    def __init__(
        self,
        cfg: StudyConfig,
        *,
        train_fn: TrainFn | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if cfg.metric not in _METRICS:
            from hpo.errors import ConfigError

            raise ConfigError(
                f"{cfg.source}: metric: unknown metric {cfg.metric!r}; allowed {list(_METRICS)}."
            )
        self.cfg = cfg
        self.data_dir = data_dir
        self._train_fn = train_fn

    @property
    def train_fn(self) -> TrainFn:
        if self._train_fn is None:
            # Imported on first use: torch is slow to import and `hpo status` never needs it.
            from hpo.engine.train import train

            self._train_fn = train
        return self._train_fn

    def spec_for(
        self, trial: optuna.trial.BaseTrial, user_attrs: Mapping[str, Any] | None = None
    ) -> TrainSpec:
        """The training run a trial stands for (baselines carry their seed as ``hpo_seed``)."""
        params = suggest_params(trial, self.cfg.search_space)
        seed = (trial.user_attrs if user_attrs is None else user_attrs).get("hpo_seed")
        return self.cfg.train_spec(params, None if seed is None else int(seed))

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        attrs = trial.user_attrs  # one storage read
        spec = self.spec_for(trial, attrs)
        # Written with the results, in one transaction (a baseline already has both).
        inputs = {"hpo_seed": spec.seed, "hpo_baseline": bool(attrs.get("hpo_baseline", False))}
        epochs: list[Any] = []
        # NopPruner never prunes: skip the storage read that asking it costs.
        study = getattr(trial, "study", None)
        may_prune = not isinstance(getattr(study, "pruner", None), optuna.pruners.NopPruner)

        def on_epoch_end(report: Any) -> None:
            epochs.append(report)
            trial.report(report.val_accuracy, report.epoch)
            if may_prune and trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned after epoch {report.epoch} (val_accuracy={report.val_accuracy:.4f})"
                )

        started = time.perf_counter()
        try:
            result = self.train_fn(spec, data_dir=self.data_dir, on_epoch_end=on_epoch_end)
        except optuna.TrialPruned:
            _record_pruned(trial, spec, epochs, time.perf_counter() - started, inputs)
            raise
        record_result(trial, result, inputs)
        if result.diverged:
            raise optuna.TrialPruned(f"diverged: {result.divergence_reason}")
        if not result.val_accuracy:
            raise RuntimeError("training finished without a validation accuracy")
        return float(result.val_accuracy[-1])


def _record_pruned(
    trial: optuna.trial.BaseTrial,
    spec: TrainSpec,
    epochs: list[Any],
    wall_time_s: float,
    inputs: Mapping[str, Any],
) -> None:
    """What is known of a run the pruner stopped: its epochs so far."""
    attrs = {
        **inputs,
        "val_accuracy_per_epoch": [float(r.val_accuracy) for r in epochs],
        "kink_hits_per_epoch": [int(r.kink_hits) for r in epochs],
        "kink_hits": sum(int(r.kink_hits) for r in epochs),
        "diverged": False,
        "precision": spec.precision,
        "wall_time_s": wall_time_s,
    }
    set_user_attrs(trial, {key: _json_safe(value) for key, value in attrs.items()})


def _json_safe(value: Any) -> Any:
    """Storage attributes are JSON: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
