"""``objective: diverge``: each trial trains its ReLU'(0) beside a ReLU'(0) = 0 reference.

Both runs share every other setting (same initial weights, same batch order). After every
epoch: the L1 distance ``sum |theta - theta_0|`` over every parameter (float64), the EPFL
reproduction's ``|sum(w_0) - sum(w)|`` over weight matrices only (float64, and summed in the
run's own dtype as their code did), both runs' test-set accuracy and kink hits, stored as
per-epoch user attributes. A trial at ReLU'(0) = 0 is the "0 vs 0" control. The reference is
deterministic, so a worker trains it once per setting and reuses it (:class:`ReferenceCache`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna

from hpo.config.modes import METRICS
from hpo.errors import ConfigError
from hpo.objective.attrs import json_safe, set_user_attrs
from hpo.objective.params import suggest_params

if TYPE_CHECKING:
    from torch import Tensor, nn

    from hpo.config.study import StudyConfig
    from hpo.engine.result import TrainResult
    from hpo.engine.spec import TrainSpec

__all__ = [
    "REFERENCE_PRIME",
    "DivergeObjective",
    "PairMeasure",
    "ReferenceCache",
    "RunTrace",
    "diverge_attrs",
    "l1_distance",
    "measure_pair",
    "trace_run",
    "weight_sum",
]

log = logging.getLogger(__name__)

REFERENCE_PRIME = 0.0  # the reference's ReLU'(0): PyTorch's for ReLU


def l1_distance(a: Iterable[Tensor], b: Iterable[Tensor]) -> float:
    """``sum |a - b|`` over every element of paired tensors, computed in float64.

    Elementwise, not a difference of sums: tensors with equal sums can be far apart.
    """
    import torch

    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"cannot compare {len(a)} tensors with {len(b)}")
    parts = []
    for x, y in zip(a, b):
        if x.shape != y.shape:
            raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
        x64 = x.detach().to(device="cpu", dtype=torch.float64)
        y64 = y.detach().to(device="cpu", dtype=torch.float64)
        parts.append((x64 - y64).abs().sum().item())
    return math.fsum(parts)


def weight_sum(params: Sequence[Tensor], names: Sequence[str], *, native: bool = False
               ) -> float:
    """The sum of every element of the parameters whose name ends with ``weight`` (biases
    left out), as the EPFL code's ``get_weight_sum``. ``native``: each tensor summed in its
    own dtype and the sums added in it (their code); otherwise in float64."""
    import torch

    chosen = [p for p, n in zip(params, names) if n.endswith("weight")]
    if native:
        return float(sum(p.sum() for p in chosen).item())
    return math.fsum(p.to(dtype=torch.float64).sum().item() for p in chosen)


@dataclass
class RunTrace:
    """One run's parameters (a CPU copy in their own dtype) and test accuracy per epoch
    (index 0: the initial weights), with the engine's result."""

    spec: TrainSpec
    names: list[str] = field(default_factory=list)
    params: list[list[Tensor]] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    result: TrainResult | None = None


def trace_run(
    spec: TrainSpec,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[int, list[Tensor]], None] | None = None,
    keep_params: bool = True,
) -> RunTrace:
    """Train ``spec`` (:func:`hpo.engine.train.train`, nothing changed) and record, at epoch
    0 and after every epoch, its parameters and its accuracy on the official test set
    (evaluated as the engine's final ``test_accuracy``). ``on_epoch(epoch, params)`` is called
    with each copy; ``keep_params=False`` drops them after that call."""
    from hpo.engine.train import train

    trace = RunTrace(spec)

    def observe(epoch: int, model: nn.Module) -> None:
        named = list(model.named_parameters())
        trace.names = [n for n, _ in named]
        params = [p.detach().to(device="cpu", copy=True) for _, p in named]
        trace.test_accuracy.append(_test_accuracy(spec, model, data_dir))
        if on_epoch is not None:
            on_epoch(epoch, params)
        trace.params.append(params if keep_params else [])

    trace.result = train(spec, data_dir=data_dir, observe_model=observe)
    return trace


def _test_accuracy(spec: TrainSpec, model: nn.Module, data_dir: Any) -> float:
    """Accuracy on the official test set, the engine's own evaluation; the model's
    train/eval mode is restored (this runs between epochs of a training run)."""
    from hpo.engine.data.loading import load_splits
    from hpo.engine.numerics.precision import resolve_precision
    from hpo.engine.train import accuracy

    precision = resolve_precision(spec.precision)
    device = next(model.parameters()).device
    split = load_splits(spec, data_dir, precision.param_dtype, device).test
    was_training = model.training
    value = accuracy(spec, model, split, precision)
    model.train(was_training)
    return value


@dataclass(frozen=True)
class PairMeasure:
    """A run against its reference, per epoch (index 0: the initial weights; ``None``
    once either run has stopped, e.g. diverged)."""

    alpha: float
    precision: str
    l1: list[float | None]
    weight_sum_difference: list[float | None]  # |sum w_0 - sum w| in float64
    weight_sum_difference_native: list[float | None]  # summed in the run's dtype (theirs)
    reference_test_accuracy: list[float]
    test_accuracy: list[float]
    reference_kink_hits: list[int]  # per epoch (epochs 1..E)
    kink_hits: list[int]
    n_params: int
    n_weights: int


def measure_pair(reference: RunTrace, spec: TrainSpec, *,
                 data_dir: str | os.PathLike[str] | None = None
                 ) -> tuple[PairMeasure, TrainResult]:
    """Train ``spec`` and compare it with ``reference`` (trained from the same settings at
    ReLU'(0) = :data:`REFERENCE_PRIME`) after every epoch; the run's engine result too."""
    epochs = spec.epochs + 1
    l1: list[float | None] = [None] * epochs
    wsd: list[float | None] = [None] * epochs
    native: list[float | None] = [None] * epochs
    names = reference.names

    def compare(epoch: int, params: list[Tensor]) -> None:
        if epoch >= len(reference.params):  # the reference stopped earlier
            return
        ref = reference.params[epoch]
        l1[epoch] = l1_distance(params, ref)
        wsd[epoch] = abs(weight_sum(ref, names) - weight_sum(params, names))
        native[epoch] = abs(weight_sum(ref, names, native=True)
                            - weight_sum(params, names, native=True))

    run = trace_run(spec, data_dir=data_dir, on_epoch=compare, keep_params=False)
    first = reference.params[0]
    measure = PairMeasure(
        alpha=float(spec.relu_prime_zero if spec.relu_prime_zero is not None
                    else REFERENCE_PRIME),
        precision=spec.precision, l1=l1, weight_sum_difference=wsd,
        weight_sum_difference_native=native,
        reference_test_accuracy=list(reference.test_accuracy),
        test_accuracy=list(run.test_accuracy),
        reference_kink_hits=list(reference.result.kink_hits_per_epoch),
        kink_hits=list(run.result.kink_hits_per_epoch),
        n_params=sum(t.numel() for t in first),
        n_weights=sum(t.numel() for t, n in zip(first, names) if n.endswith("weight")),
    )
    return measure, run.result


def diverge_attrs(m: PairMeasure, run: TrainResult, reference: TrainResult,
                  spec: TrainSpec) -> dict[str, Any]:
    """The user attributes of one diverge trial (JSON-safe). Per-epoch lists hold epochs 1
    to E (one export column per epoch, as ``kink_hits_per_epoch``); the value at the initial
    weights is ``<name>_initial``."""
    per_epoch = {
        "l1": m.l1, "weight_sum_difference": m.weight_sum_difference,
        "weight_sum_difference_native": m.weight_sum_difference_native,
        "reference_test_accuracy": m.reference_test_accuracy,
        "test_accuracy_per_epoch": m.test_accuracy,
    }
    attrs: dict[str, Any] = {
        "hpo_seed": spec.seed, "hpo_baseline": False, "alpha": m.alpha,
        "precision": m.precision,
        **{k: v[1:] for k, v in per_epoch.items()},
        **{f"{k}_initial": v[0] if v else None for k, v in per_epoch.items()},
        "test_accuracy": m.test_accuracy[-1] if m.test_accuracy else None,
        "reference_kink_hits": m.reference_kink_hits, "kink_hits_per_epoch": m.kink_hits,
        "kink_hits": int(sum(m.kink_hits)), "n_params": m.n_params, "n_weights": m.n_weights,
        "diverged": bool(run.diverged or reference.diverged),
        "divergence_reason": run.divergence_reason or reference.divergence_reason,
        "train_samples": int(run.train_samples), "params_sha256": run.params_sha256,
        "reference_params_sha256": reference.params_sha256,
        "device": run.device, "torch_version": run.torch_version,
        "wall_time_s": float(run.wall_time_s), "platform": dict(run.platform),
    }
    return {key: json_safe(value) for key, value in attrs.items()}


class ReferenceCache:
    """The last few reference runs of this process, by their settings: a reference is
    deterministic, so the trials of one precision train it once per worker."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._runs: OrderedDict[str, RunTrace] = OrderedDict()
        self.trained = 0  # references trained (not reused)

    def get(self, spec: TrainSpec, data_dir: str | os.PathLike[str] | None) -> RunTrace:
        """The reference of ``spec``'s settings (``spec`` with ReLU'(0) = 0)."""
        ref_spec = spec.replace(relu_prime_zero=REFERENCE_PRIME)
        key = json.dumps(ref_spec.to_dict(), sort_keys=True, default=str)
        if key in self._runs:
            self._runs.move_to_end(key)
            return self._runs[key]
        trace = trace_run(ref_spec, data_dir=data_dir)
        self.trained += 1
        self._runs[key] = trace
        while len(self._runs) > self.size:
            self._runs.popitem(last=False)
        return trace


class DivergeObjective:
    """Run one ``objective: diverge`` trial: the trial's ReLU'(0) beside the reference.

    Args:
        cfg: the study's configuration (``objective == "diverge"``).
        data_dir: where the datasets live (``None``: ``HPO_DATA_DIR``).

    Raises:
        ConfigError: ``cfg`` is not a diverge study.
    """

    def __init__(self, cfg: StudyConfig, *,
                 data_dir: str | os.PathLike[str] | None = None) -> None:
        if cfg.objective != "diverge" or cfg.metric not in METRICS["diverge"]:
            raise ConfigError(
                f"{cfg.source}: objective: not a diverge study (got objective "
                f"{cfg.objective!r}, metric {cfg.metric!r}); allowed: objective: diverge with "
                f"metric {' or '.join(METRICS['diverge'])}; fix: set both."
            )
        self.cfg = cfg
        self.data_dir = data_dir
        self.references = ReferenceCache()

    def spec_for(self, trial: optuna.trial.BaseTrial) -> TrainSpec:
        """The trial's run: ``train:`` plus the trial's parameters."""
        return self.cfg.train_spec(suggest_params(trial, self.cfg.search_space))

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        spec = self.spec_for(trial)
        if spec.relu_prime_zero is None:
            spec = spec.replace(relu_prime_zero=REFERENCE_PRIME)
        reference = self.references.get(spec, self.data_dir)
        m, run = measure_pair(reference, spec, data_dir=self.data_dir)
        set_user_attrs(trial, diverge_attrs(m, run, reference.result, spec))
        series = m.l1 if self.cfg.metric == "l1_distance" else m.weight_sum_difference
        # a diverged run has no later epochs: its last measured value
        value = [v for v in series if v is not None][-1]
        log.info("trial %d: %s ReLU'(0)=%s: L1 %s, weight-sum difference %s per epoch",
                 trial.number, spec.precision, m.alpha, m.l1, m.weight_sum_difference)
        return float(value)
