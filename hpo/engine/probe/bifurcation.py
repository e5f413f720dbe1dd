"""Bifurcation probe: how often do two values of ReLU'(0) give different gradients?

For each of K inits, two networks with the same weights, ReLU'(0) = ``alphas[0]`` and
``alphas[1]``, see one epoch of mini-batches without updates; an init stops at its first
bitwise gradient difference (a bifurcation). Only a mini-batch with an activation input
exactly on 0 can differ, so only those need both backward passes. Methods: ``batched``
(fully connected nets) and ``reference`` (any model). See docs/design.md#the-bifurcation-probe.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from hpo.engine.data import loading
from hpo.engine.data import tensors as data_mod
from hpo.engine.numerics.flags import check_tf32_device, numerics
from hpo.engine.numerics.platform import platform_record
from hpo.engine.numerics.precision import Precision, resolve_precision
from hpo.engine.probe import batched as probe_batched
from hpo.engine.probe.reference import init_models, reference_init, rng_devices
from hpo.engine.spec import TrainSpec
from hpo.engine.step import deterministic
from hpo.engine.train import resolve_device
from hpo.errors import ConfigError

__all__ = [
    "COMPARE_MODES",
    "LOSS_DTYPES",
    "METHODS",
    "TRAIN_SETS",
    "ProbeProgress",
    "ProbeResult",
    "run_probe",
]

log = logging.getLogger(__name__)

# first: the first parameterised layer's weight and bias gradients; first_weight: its
# weight gradient alone (the paper's Section 3); all: every parameter's.
COMPARE_MODES = ("first", "first_weight", "all")
METHODS = ("auto", "batched", "reference")
# ``split``: the training split ``hpo train`` uses (``val_size`` images held out);
# ``all``: every official training image (the paper's Section 3: all 60,000 of MNIST).
TRAIN_SETS = ("split", "all")
# float32: the loss from float32 logits, as the training loop; param: in the model's dtype
# (``nn.CrossEntropyLoss()(model(x), y)`` of a ``.half()`` model, the EPFL volume notebook).
LOSS_DTYPES = ("float32", "param")


@dataclass(frozen=True)
class ProbeProgress:
    """What the progress callback receives after each examined mini-batch."""

    batches_examined: int  # (init, mini-batch) pairs examined so far
    batches_total: int  # inits x mini-batches per epoch (bifurcated inits stop early)
    bifurcated: int
    elapsed_s: float


@dataclass
class ProbeResult:
    """Outcome of :func:`run_probe`; lists are per init (init ``k`` has seed ``seed + k``)."""

    spec: dict[str, Any]
    inits: int
    alphas: tuple[float, float]
    compare: str
    method: str
    train_samples: int
    batches_per_epoch: int
    train_set: str = "split"  # see run_probe
    accumulate: bool = False  # see run_probe
    sample_size: int | None = None
    shuffle: bool = True
    loss_dtype: str = "float32"
    bifurcated: int = 0
    bifurcated_fraction: float = 0.0
    batches_examined: int = 0
    hazard_per_batch: float = 0.0
    median_samples_to_bifurcation: float | None = None
    # samples seen up to and including the bifurcating mini-batch; None: no bifurcation
    samples_to_bifurcation: list[int | None] = field(default_factory=list)
    batches_to_bifurcation: list[int | None] = field(default_factory=list)  # 1-based
    init_seeds: list[int] = field(default_factory=list)
    # (init, mini-batch) pairs with an activation input exactly on 0: both backward passes ran
    kinked_batches: int = 0
    forward_flops: float = 0.0  # matmul/conv FLOPs actually executed (batched method)
    backward_flops: float = 0.0
    device: str = "cpu"
    threads: int = 1
    torch_version: str = ""
    # hpo.engine.numerics.platform.platform_record, read inside the probe's numerics flags
    platform: dict[str, Any] = field(default_factory=dict)
    init_time_s: float = 0.0  # building the initial models (part of wall_time_s)
    wall_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["alphas"] = list(self.alphas)
        return out


def run_probe(
    spec: TrainSpec,
    *,
    inits: int,
    alphas: tuple[float, float] = (0.0, 1.0),
    compare: str = "first",
    data_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[ProbeProgress], None] | None = None,
    method: str = "auto",
    train_set: str = "split",
    accumulate: bool = False,
    sample_size: int | None = None,
    shuffle: bool = True,
    loss_dtype: str = "float32",
) -> ProbeResult:
    """Probe how often ReLU'(0) = ``alphas[0]`` and ``alphas[1]`` give different gradients.

    Args:
        spec: model, data, precision, batch size, sample size and base ``seed``;
            ``relu_prime_zero`` must be unset (the alphas replace it).
        inits: number of initialisations (seeds ``spec.seed`` .. ``spec.seed + inits - 1``).
        compare: ``first`` (the first parameterised layer's gradients), ``first_weight``
            (its weight gradient only, as the paper's Section 3) or ``all``.
        progress: called after each examined mini-batch; what it raises propagates.
        method: ``auto``, ``batched`` or ``reference``.
        train_set: ``split`` (the training split of ``hpo train``) or ``all`` (every
            official training image).
        accumulate: no ``zero_grad``: compare the gradients summed over the mini-batches so
            far, by value (``(a - b).abs().sum() != 0``), after each one (batched method only).
        sample_size: probe N images drawn with replacement from ``train_set`` (one draw
            seeded by ``spec.split_seed``, the same for every init); None: each image once.
        shuffle: False keeps the images in order (a DataLoader without shuffling).
        loss_dtype: ``float32`` (from float32 logits) or ``param`` (the model's dtype).

    Raises ConfigError on bad arguments or settings, DataError when the data cannot be read.
    """
    started = time.perf_counter()
    alphas = _check_args(spec, inits, alphas, compare, method)
    _check_protocol(train_set, sample_size, loss_dtype)
    precision = resolve_precision(spec.precision)
    if method == "auto":
        method = "batched" if probe_batched.supports(spec, precision) else "reference"
    if accumulate and method != "batched":
        raise ConfigError(
            f"accumulate needs method 'batched' (model 'fc' without batch_norm, a pure "
            f"precision), got method {method!r} for model {spec.model!r}; allowed: fc nets; "
            "fix: drop accumulate or probe an fc net."
        )
    elif method == "batched" and not probe_batched.supports(spec, precision):
        raise ConfigError(
            f"method 'batched' needs model 'fc' without batch_norm and a pure precision, got "
            f"model={spec.model!r}, batch_norm={spec.batch_norm}, precision={spec.precision!r}; "
            "use method 'reference' or 'auto'."
        )
    device = resolve_device(spec.device)
    check_tf32_device(spec.precision, device, spec.device)
    protocol = {"accumulate": bool(accumulate), "sample_size": sample_size,
                "shuffle": bool(shuffle), "loss_dtype": loss_dtype}
    with numerics(spec.precision, spec.reduced_precision_reduction):
        result = _probe(spec, inits, alphas, compare, method, precision, device, data_dir,
                        progress, started, train_set, protocol)
    _summarise(result, spec.batch_size)
    result.wall_time_s = time.perf_counter() - started
    return result


def _probe(
    spec: TrainSpec, inits: int, alphas: tuple[float, float], compare: str, method: str,
    precision: Precision, device: torch.device, data_dir: str | os.PathLike[str] | None,
    progress: Callable[[ProbeProgress], None] | None, started: float, train_set: str,
    protocol: dict[str, Any],
) -> ProbeResult:
    x, y = _training_data(spec, precision, device, data_dir, train_set)
    order = _order(spec, len(y), protocol["sample_size"], protocol["shuffle"]).to(device)
    n = len(order)
    batches = [order[s : s + spec.batch_size] for s in range(0, n, spec.batch_size)]
    result = ProbeResult(
        spec=spec.to_dict(), inits=inits, alphas=alphas, compare=compare, method=method,
        train_samples=n, train_set=train_set, batches_per_epoch=len(batches),
        init_seeds=[spec.seed + k for k in range(inits)], device=str(device),
        threads=torch.get_num_threads(), torch_version=torch.__version__, **protocol,
    )
    result.batches_to_bifurcation = [None] * inits
    tracker = _Tracker(result, progress, started)
    # As train(): seeded inits without moving the caller's RNG, and the engine's own
    # deterministic-kernel settings (private there; shared so both run the same kernels).
    with torch.random.fork_rng(devices=rng_devices(device)), deterministic(device):
        result.platform = platform_record(device)  # the flags the probe runs with
        if method == "batched":
            probe_batched.run(spec, precision, device, x, y, batches, tracker, init_models)
        else:
            for k in range(inits):
                reference_init(spec, k, precision, device, x, y, batches, tracker)
    return result


def _order(spec: TrainSpec, n: int, sample_size: int | None, shuffle: bool) -> Tensor:
    """The indices of one pass: each image once, shuffled by ``spec.seed`` (the default),
    or ``sample_size`` images drawn with replacement (seeded by ``spec.split_seed``)."""
    if sample_size is None and shuffle:
        return torch.randperm(n, generator=torch.Generator().manual_seed(spec.seed))
    pool = torch.arange(n)
    if sample_size is not None:
        draw = torch.Generator().manual_seed(spec.split_seed)
        pool = torch.randint(n, (sample_size,), generator=draw)
    if shuffle:
        pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(spec.seed))]
    return pool


def _check_protocol(train_set: str, sample_size: int | None, loss_dtype: str) -> None:
    if train_set not in TRAIN_SETS:
        raise ConfigError(
            f"Unknown train_set {train_set!r}. Valid values are {list(TRAIN_SETS)}."
        )
    if sample_size is not None and (
        isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1
    ):
        raise ConfigError(f"Invalid sample_size {sample_size!r}: it must be an integer >= 1 "
                          "(images drawn with replacement) or None (each image once).")
    if loss_dtype not in LOSS_DTYPES:
        raise ConfigError(
            f"Unknown loss_dtype {loss_dtype!r}. Valid values are {list(LOSS_DTYPES)}."
        )


class _Tracker:
    """Collects per-init outcomes and calls the progress callback."""

    def __init__(
        self, result: ProbeResult, progress: Callable[[ProbeProgress], None] | None,
        started: float,
    ) -> None:
        self.result = result
        self.progress = progress
        self.started = started
        self.compare = result.compare
        self.alphas = result.alphas
        self.accumulate = result.accumulate
        self.loss_dtype = result.loss_dtype
        self.total = result.inits * result.batches_per_epoch

    def examined(self, count: int, kinked: int = 0) -> None:
        self.result.batches_examined += count
        self.result.kinked_batches += kinked
        if self.progress is not None:
            self.progress(ProbeProgress(
                self.result.batches_examined, self.total, self.result.bifurcated,
                time.perf_counter() - self.started,
            ))

    def bifurcated(self, init: int, batch: int) -> None:
        """Init ``init`` (0-based) first differed at mini-batch ``batch`` (0-based)."""
        self.result.batches_to_bifurcation[init] = batch + 1
        self.result.bifurcated += 1


def _check_args(
    spec: TrainSpec, inits: int, alphas: Any, compare: str, method: str
) -> tuple[float, float]:
    if isinstance(inits, bool) or not isinstance(inits, int) or inits < 1:
        raise ConfigError(f"Invalid inits {inits!r}: it must be an integer >= 1.")
    if compare not in COMPARE_MODES:
        raise ConfigError(f"Unknown compare {compare!r}. Valid values are {list(COMPARE_MODES)}.")
    if method not in METHODS:
        raise ConfigError(f"Unknown method {method!r}. Valid values are {list(METHODS)}.")
    try:
        pair = tuple(float(a) for a in alphas)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not all(math.isfinite(a) for a in pair):
        raise ConfigError(
            f"Invalid alphas {alphas!r}: give two finite numbers, the two values of ReLU'(0) "
            "to compare (e.g. 0 1)."
        )
    if spec.relu_prime_zero is not None:
        raise ConfigError(
            f"relu_prime_zero={spec.relu_prime_zero} is set, but the probe sets ReLU'(0) to each "
            "of its two alphas; leave relu_prime_zero unset and pass the values as alphas."
        )
    return pair  # type: ignore[return-value]


def _training_data(
    spec: TrainSpec, precision: Precision, device: torch.device,
    data_dir: str | os.PathLike[str] | None, train_set: str = "split",
) -> tuple[Tensor, Tensor]:
    """The training split as ``hpo train`` prepares it (same indices, scaling and dtype),
    or with ``train_set="all"`` every official training image (scaled the same way)."""
    raw = loading.load_raw(spec.dataset, data_dir, image_size=spec.resolved_image_size,
                           channels=spec.resolved_channels)
    n = len(raw.train_labels)
    if train_set == "all":
        if spec.train_subset is not None and spec.train_subset > n:
            raise ConfigError(
                f"train_subset={spec.train_subset} is more than the {n} training images of "
                f"{spec.dataset!r}; allowed 1 to {n}; lower it (or leave it unset: all)."
            )
        train_idx = torch.arange(n if spec.train_subset is None else spec.train_subset)
    else:
        train_idx, _ = data_mod.split_indices(
            n, val_size=spec.val_size, train_subset=spec.train_subset,
            split_seed=spec.split_seed, own_validation=raw.val_images is not None,
        )
    x = data_mod.prepare_images(
        raw.train_images[train_idx], dataset=spec.dataset, normalize=spec.normalize,
        dtype=precision.param_dtype, device=device,
    )
    return x, raw.train_labels[train_idx].to(device)


def _summarise(result: ProbeResult, batch_size: int) -> None:
    n = result.train_samples
    result.samples_to_bifurcation = [
        None if b is None else min(b * batch_size, n) for b in result.batches_to_bifurcation
    ]
    done = [s for s in result.samples_to_bifurcation if s is not None]
    result.bifurcated_fraction = result.bifurcated / result.inits
    result.hazard_per_batch = (
        result.bifurcated / result.batches_examined if result.batches_examined else 0.0
    )
    result.median_samples_to_bifurcation = float(statistics.median(done)) if done else None
