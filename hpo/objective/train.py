"""Trial -> training run -> user attributes: :class:`Objective`, the callable a worker hands
its training trials to.

It turns the trial's parameters into a :class:`~hpo.engine.spec.TrainSpec` through the study
config, trains it (reporting the validation accuracy after every epoch so the pruner can stop
it), records what the run measured and returns the study's metric. A diverged run ends
PRUNED, not FAIL. Why: docs/design.md#a-diverged-run-is-pruned
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

import hpo.study.twins as twins
from hpo.config.modes import METRICS
from hpo.errors import ConfigError
from hpo.objective.attrs import HEADLINE, RESULT_ATTR, json_safe, set_user_attrs
from hpo.objective.params import suggest_params

if TYPE_CHECKING:
    from hpo.config.study import StudyConfig
    from hpo.engine.result import TrainResult
    from hpo.engine.spec import TrainSpec

__all__ = ["Objective", "TrainFn", "record_fields", "record_result"]

log = logging.getLogger(__name__)

#: ``train(spec, *, data_dir=..., on_epoch_end=...) -> TrainResult`` (hpo.engine.train.train).
TrainFn = Callable[..., "TrainResult"]

#: Test hook: a folder where each trial writes <number>.held, then waits for <number>.go or go.
HOLD_ENV = "HPO_TEST_HOLD_DIR"

def record_result(
    trial: optuna.trial.BaseTrial,
    result: TrainResult,
    inputs: Mapping[str, Any] | None = None,
    known: Mapping[str, Any] | None = None,
) -> None:
    """Store what a finished (or diverged) run measured: the inputs (seed and baseline tag)
    as attributes of their own, unless ``known`` (the trial's attrs as read before the run)
    already holds them, and the measurements as one ``result`` attribute
    (:mod:`hpo.objective.attrs`)."""
    fields: dict[str, Any] = {
        "test_accuracy": result.test_accuracy,
        "val_accuracy_per_epoch": list(result.val_accuracy),
        "train_loss_per_epoch": [float(x) for x in result.train_loss],
        "kink_hits": int(result.kink_hits),
        "kink_hits_per_epoch": [int(h) for h in result.kink_hits_per_epoch],
        # {activation module name: hits per epoch}
        "kink_hits_per_layer": {name: [int(h) for h in hits]
                                for name, hits in result.kink_hits_per_layer.items()},
        "configured_activations": int(result.configured_activations),
        "diverged": bool(result.diverged),
        "precision": result.precision,
        "device": result.device,
        "torch_version": result.torch_version,
        "wall_time_s": float(result.wall_time_s),
        "samples_per_second": float(result.samples_per_second),
        "params_sha256": result.params_sha256,
        # One JSON dict: which CPU, BLAS, GPU and numerics flags made these numbers.
        "platform": dict(result.platform),
    }
    if result.diverged:
        fields["divergence_reason"] = result.divergence_reason
    record_fields(trial, fields, inputs, known)


def record_fields(
    trial: optuna.trial.BaseTrial,
    fields: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
    known: Mapping[str, Any] | None = None,
) -> None:
    """Write ``inputs`` (those ``known`` does not hold already) and the :data:`headline
    <hpo.objective.attrs.HEADLINE>` fields as attributes of their own, then all the other
    measurements as the one ``result`` attribute (:mod:`hpo.objective.attrs`)."""
    safe = {key: json_safe(value) for key, value in fields.items()}
    own = {key: json_safe(value) for key, value in (inputs or {}).items()}
    own.update({key: safe.pop(key) for key in HEADLINE if key in safe})
    set_user_attrs(trial, own, known)
    trial.set_user_attr(RESULT_ATTR, safe)


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
        if cfg.objective != "train" or cfg.metric not in METRICS["train"]:
            raise ConfigError(
                f"{cfg.source}: objective: not a training study (got objective "
                f"{cfg.objective!r}, metric {cfg.metric!r}); allowed: objective: train with "
                f"metric {' or '.join(METRICS['train'])}; fix: use make_objective(cfg)."
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
        """The training run a trial stands for (baselines and twins carry their seed as
        ``hpo_seed``; in paired mode each search trial derives its own, see
        :mod:`hpo.study.twins`). Enqueues nothing."""
        attrs = trial.user_attrs if user_attrs is None else user_attrs
        return self._inputs(trial, attrs, enqueue_twin=False)[0]

    def _inputs(
        self, trial: optuna.trial.BaseTrial, attrs: Mapping[str, Any], *, enqueue_twin: bool
    ) -> tuple[TrainSpec, dict[str, Any]]:
        """The spec, and the input attributes to record with the results. In paired mode a
        tuned search trial enqueues its twin here, before training."""
        params = suggest_params(trial, self.cfg.search_space)
        seed = attrs.get("hpo_seed")
        inputs: dict[str, Any] = {"hpo_baseline": bool(attrs.get("hpo_baseline", False))}
        search = not inputs["hpo_baseline"] and attrs.get(twins.TWIN_OF_ATTR) is None
        sys_attrs: Mapping[str, Any] = {}
        if search and twins.is_paired(self.cfg):
            sys_attrs = twins.system_attrs(trial)
            if seed is None:
                seed = twins.paired_seed(self.cfg, trial.number, sys_attrs)
        spec = self.cfg.train_spec(params, None if seed is None else int(seed))
        inputs["hpo_seed"] = spec.seed
        if enqueue_twin and search and twins.is_paired(self.cfg) and twins.is_tuned(spec):
            if isinstance(trial, optuna.Trial):
                inputs[twins.TWIN_ATTR] = twins.ensure_twin(
                    trial, self.cfg, params, spec.seed, sys_attrs
                )
            else:  # a FixedTrial (tests) has no study to enqueue into
                log.debug("trial %d has no study: no twin enqueued", trial.number)
        return spec, inputs

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        attrs = trial.user_attrs  # one storage read
        # Written with the results (a baseline or a copy already has them: not rewritten).
        spec, inputs = self._inputs(trial, attrs, enqueue_twin=True)
        _hold(trial.number)
        epochs: list[Any] = []
        platform: dict[str, Any] = {}  # read during the run, for a pruned trial's record
        # NopPruner never prunes: skip the storage read that asking it costs. Twins are never
        # pruned: a pruned twin would leave its completed tuned trial without a partner.
        study = getattr(trial, "study", None)
        may_prune = not isinstance(
            getattr(study, "pruner", None), optuna.pruners.NopPruner
        ) and attrs.get(twins.TWIN_OF_ATTR) is None

        def on_epoch_end(report: Any) -> None:
            if not epochs:
                platform.update(_platform_now(spec))
            epochs.append(report)
            trial.report(report.val_accuracy, report.epoch)
            # After the last epoch there is no training left to save: the pruner is not
            # asked (two storage reads less per trial), and the finished run completes.
            if may_prune and report.epoch < spec.epochs and trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned after epoch {report.epoch} "
                    f"(val_accuracy {100 * report.val_accuracy:.2f} %)"
                )

        started = time.perf_counter()
        try:
            result = self.train_fn(spec, data_dir=self.data_dir, on_epoch_end=on_epoch_end)
        except optuna.TrialPruned:
            _record_pruned(trial, spec, epochs, time.perf_counter() - started, inputs, attrs,
                           platform)
            raise
        record_result(trial, result, inputs, attrs)
        if result.diverged:
            raise optuna.TrialPruned(f"diverged: {result.divergence_reason}")
        if not result.val_accuracy:
            raise RuntimeError("training finished without a validation accuracy")
        return float(result.val_accuracy[-1])


def _hold(number: int) -> None:
    """The :data:`HOLD_ENV` test hook (nothing when it is unset)."""
    folder = os.environ.get(HOLD_ENV)
    if folder:
        (Path(folder) / f"{number}.held").touch()
        while not any((Path(folder) / go).exists() for go in (f"{number}.go", "go")):
            time.sleep(0.05)  # a stop signal interrupts this as it would a training run


def _record_pruned(
    trial: optuna.trial.BaseTrial,
    spec: TrainSpec,
    epochs: list[Any],
    wall_time_s: float,
    inputs: Mapping[str, Any],
    known: Mapping[str, Any],
    platform: Mapping[str, Any],
) -> None:
    """What is known of a run the pruner stopped: its epochs so far, and the platform
    record read at its first epoch's end (inside the run's numerics flags)."""
    fields: dict[str, Any] = {
        "val_accuracy_per_epoch": [float(r.val_accuracy) for r in epochs],
        "train_loss_per_epoch": [float(r.train_loss) for r in epochs],
        "kink_hits_per_epoch": [int(r.kink_hits) for r in epochs],
        "kink_hits": sum(int(r.kink_hits) for r in epochs),
        "diverged": False,
        "precision": spec.precision,
        "wall_time_s": wall_time_s,
    }
    if platform:
        fields["platform"] = dict(platform)
    record_fields(trial, fields, inputs, known)


def _platform_now(spec: TrainSpec) -> dict[str, Any]:
    """The platform record of the running trial: called from the per-epoch callback, which
    the engine runs inside the run's numerics flags."""
    from hpo.engine.numerics.platform import platform_record
    from hpo.engine.train import resolve_device

    return platform_record(resolve_device(spec.device))
