"""What one training step is made of: the optimizer, the loss, the input shape, and the
deterministic, seeded context it runs in.

The training loop (:mod:`hpo.engine.train`) is built from these, and so are the analyses
that train their own way (the probe) and the benchmarks that time a step against the
stock one: public, so that all of them take the very same step instead of copying it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hpo.engine.data import tensors as data_mod
from hpo.engine.numerics.precision import Precision, resolve_adam_eps
from hpo.engine.result import TrainResult
from hpo.engine.spec import TrainSpec

__all__ = [
    "autocast",
    "batch_loss",
    "deterministic",
    "grad_scaler",
    "make_optimizer",
    "make_scheduler",
    "seeded",
    "shape_for_model",
    "uses_channels_last",
]


def batch_loss(model: nn.Module, xb: Tensor, yb: Tensor, precision: Precision) -> Tensor:
    """Mean cross-entropy of ``model`` on one batch, forward under the run's autocast.

    Computed from float32 logits: log-sum-exp overflows in float16.
    """
    with autocast(precision, xb.device):
        logits = model(xb)
    return F.cross_entropy(logits.float(), yb)


def shape_for_model(spec: TrainSpec, x: Tensor) -> Tensor:
    """A batch of prepared images fitted to ``spec``'s model input channels and size (the
    one place the training loop, the probe and the benchmarks shape a batch)."""
    return data_mod.shape_batch(
        x, channels=spec.resolved_channels, image_size=spec.resolved_image_size
    )


def make_optimizer(
    spec: TrainSpec, model: nn.Module, precision: Precision, result: TrainResult
) -> torch.optim.Optimizer:
    """The run's optimizer over ``model``'s parameters; records Adam's epsilon on ``result``.

    Adam uses the fused kernel where it keeps the run's arithmetic (see below).
    """
    params = model.parameters()
    if spec.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
            nesterov=spec.nesterov,
        )
    eps = resolve_adam_eps(spec.adam_eps, precision.param_dtype)
    result.optimizer_eps = eps
    # The fused kernel does the whole update in one pass (about 2x faster on CPU, which
    # matters for small nets) and is deterministic, but it computes float16/bfloat16 in
    # float32: pure low precisions keep the op-by-op update in their own dtype (see
    # precision.py), and runs with a gradient scaler keep the path GradScaler unscales for.
    fused = precision.param_dtype in (torch.float32, torch.float64) and not (
        precision.uses_grad_scaler
    )
    return torch.optim.Adam(
        params, lr=spec.lr, eps=eps, weight_decay=spec.weight_decay, fused=fused
    )


def make_scheduler(
    spec: TrainSpec, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The run's learning-rate schedule, stepped once per epoch (after it), or None.

    Per epoch, not per step, as in the paper's runs: epoch ``e`` (1-based) of ``E`` trains
    at ``lr * (1 + cos(pi * (e - 1) / E)) / 2`` (cosine) or
    ``lr * lr_gamma ** ((e - 1) // lr_step_epochs)`` (step). The values are Python floats
    computed on the host: no device work, no synchronisation.
    """
    if spec.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs)
    if spec.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=spec.lr_step_epochs, gamma=spec.lr_gamma
        )
    return None


def uses_channels_last(spec: TrainSpec, model: nn.Module, device: torch.device) -> bool:
    """Whether the run trains in channels-last memory format (``auto``: CUDA and a conv
    net, where cuDNN's NHWC kernels pay off; CPU runs keep today's layout and bits)."""
    if spec.channels_last != "auto":
        return spec.channels_last == "true"
    return device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def grad_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for ``amp_float16``, else None."""
    if not precision.uses_grad_scaler:
        return None
    return torch.amp.GradScaler(device.type)


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the amp precisions, a no-op context for pure ones."""
    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.autocast_dtype)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the body from ``torch.manual_seed(seed)``, restoring the caller's RNG states."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the body, restoring the caller's settings afterwards."""
    if device.type == "cuda":
        # cuBLAS reads this when its handle is created; required for deterministic GEMMs.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]
        torch.backends.cudnn.deterministic = previous[3]
