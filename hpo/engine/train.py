"""One training loop for every model: precision, seeding, per-epoch callback, divergence.

The weights and the batch order come from ``spec.seed`` only (two runs that differ only in
ReLU'(0) start alike); a NaN or infinite loss ends the run with ``diverged=True``; an
exception from ``on_epoch_end`` propagates; the numerics flags hold for the whole run.
See docs/design.md#the-training-loop-determinism-divergence-numerics.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from hpo.engine.data import tensors as data_mod
from hpo.engine.data.augment import CropFlip, black_pixel
from hpo.engine.data.loading import load_splits
from hpo.engine.data.splits import Split
from hpo.engine.models.activations import KinkedActivation, kinked_modules
from hpo.engine.models.build import build_model
from hpo.engine.numerics.flags import check_tf32_device, numerics
from hpo.engine.numerics.platform import platform_record
from hpo.engine.numerics.precision import Precision, resolve_precision
from hpo.engine.result import TrainResult
from hpo.engine.spec import TrainSpec
from hpo.engine.step import (
    autocast,
    batch_loss,
    deterministic,
    grad_scaler,
    make_optimizer,
    make_scheduler,
    seeded,
    shape_for_model,
    uses_channels_last,
)
from hpo.errors import ConfigError

__all__ = ["EpochReport", "accuracy", "params_sha256", "resolve_device", "train"]

log = logging.getLogger(__name__)

# On CUDA a per-step `.item()` would synchronise; check the loss every this many steps.
_CUDA_CHECK_EVERY = 32


@dataclass(frozen=True)
class EpochReport:
    """What the per-epoch callback receives."""

    epoch: int  # 1-based
    val_accuracy: float
    train_loss: float
    kink_hits: int  # kink hits during this epoch's backward passes
    elapsed_s: float


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was requested but no CUDA device is available; "
            "use device 'cpu' or 'auto'."
        )
    return torch.device(name)


def train(
    spec: TrainSpec,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    on_epoch_end: Callable[[EpochReport], None] | None = None,
    observe_model: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train ``spec`` and return its metrics. Raw data is loaded once per process.

    Args:
        spec: what to train.
        data_dir: folder with the dataset files (default: ``HPO_DATA_DIR``, then the
            cache; image folders name their path in ``spec.dataset``).
        on_epoch_end: called after each epoch with its validation accuracy; may raise
            (e.g. ``optuna.TrialPruned``) to stop the run.
        observe_model: called with ``(0, model)`` before the first step and with
            ``(epoch, model)`` after each completed epoch; it must not modify the model
            (analyses use it to read the weights).
    """
    started = time.perf_counter()
    device = resolve_device(spec.device)
    check_tf32_device(spec.precision, device, spec.device)
    # Outermost: the data, every step and the test accuracy run with the run's flags.
    with numerics(spec.precision, spec.reduced_precision_reduction):
        result = _train(spec, device, data_dir, on_epoch_end, observe_model)
    result.wall_time_s = time.perf_counter() - started
    return result


def _train(
    spec: TrainSpec,
    device: torch.device,
    data_dir: str | os.PathLike[str] | None,
    on_epoch_end: Callable[[EpochReport], None] | None,
    observe_model: Callable[[int, nn.Module], None] | None,
) -> TrainResult:
    precision = resolve_precision(spec.precision)
    input_dtype = precision.param_dtype
    splits = load_splits(spec, data_dir, input_dtype, device)
    train_split, val_split, test_split = splits.train, splits.val, splits.test

    result = TrainResult(
        device=str(device), precision=spec.precision, torch_version=torch.__version__,
        train_samples=len(train_split.y), threads=torch.get_num_threads(),
    )
    with seeded(spec.seed, device), deterministic(device):
        # Read here: the flags recorded are the ones this run trains with.
        result.platform = platform_record(device)
        built = build_model(spec, num_classes=splits.num_classes)
        model = built.model.to(device=device, dtype=precision.param_dtype)
        result.configured_activations = built.configured_activations
        # --- protocol: memory format, schedule, augmentation (each off by default) ---
        memory_format = (
            torch.channels_last if uses_channels_last(spec, model, device)
            else torch.contiguous_format
        )
        model = model.to(memory_format=memory_format)
        optimizer = make_optimizer(spec, model, precision, result)
        scheduler = make_scheduler(spec, optimizer)
        augment = _augmentation(spec, train_split.x.shape[1], input_dtype, device)
        # ---
        batch_order = torch.Generator().manual_seed(spec.seed)
        if observe_model is not None:
            observe_model(0, model)
        _fit(spec, model, optimizer, precision, train_split, val_split, batch_order,
             on_epoch_end, observe_model, result,
             _Protocol(scheduler, augment, memory_format))
    if not result.diverged:
        result.test_accuracy = accuracy(spec, model, test_split, precision)
    result.params_sha256 = params_sha256(model)
    return result


def _fit(
    spec: TrainSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    train_split: Split,
    val_split: Split,
    batch_order: torch.Generator,
    on_epoch_end: Callable[[EpochReport], None] | None,
    observe_model: Callable[[int, nn.Module], None] | None,
    result: TrainResult,
    protocol: _Protocol | None = None,
) -> None:
    """Train ``spec.epochs`` epochs; stop early on divergence (or when a callback raises)."""
    activations = kinked_modules(model)
    for _, module in activations:
        module.reset_kink_hits()
    result.kink_hits_per_layer = {name: [] for name, _ in activations}
    device = train_split.x.device
    loop = _Loop(
        spec, model, optimizer, precision, train_split, val_split, result,
        protocol or _Protocol(), activations, grad_scaler(precision, device),
        _reads_loss_each_step(device), on_epoch_end, observe_model,
    )
    n = len(train_split.y)
    # Many batches gathered at once into one buffer, reused for the run (batches.py).
    batches = train_split.batches(spec.batch_size)
    size = spec.resolved_image_size  # resize or 3 channels: shape_batch per batch
    x_shape = train_split.x.shape
    reshape = x_shape[1] != spec.resolved_channels or x_shape[-2:] != (size, size)
    for epoch in range(1, spec.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        order = (torch.randperm(n, generator=batch_order) if spec.shuffle
                 else torch.arange(n)).to(device)
        epoch_batches = batches.epoch(order)
        if reshape:
            epoch_batches = ((shape_for_model(spec, xb), yb) for xb, yb in epoch_batches)
        if loop.protocol.augment is not None:
            epoch_batches = loop.protocol.augment.epoch(epoch_batches, len(order))
        loss, steps = loop.steps(epoch, epoch_batches)
        if not loop.end_epoch(epoch, epoch_start, loss, steps):
            break


@dataclass(frozen=True)
class _Protocol:
    """The run's optional protocol parts (all off: the loop as it always was)."""

    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    augment: CropFlip | None = None
    memory_format: torch.memory_format = torch.contiguous_format


@dataclass(frozen=True)
class _Loop:
    """What every epoch of one run uses: the steps of an epoch, then its end."""

    spec: TrainSpec
    model: nn.Module
    optimizer: torch.optim.Optimizer
    precision: Precision
    train_split: Split
    val_split: Split
    result: TrainResult
    protocol: _Protocol
    activations: list[tuple[str, KinkedActivation]]
    scaler: torch.amp.GradScaler | None
    on_cpu: bool  # read the loss every step (see _reads_loss_each_step)
    on_epoch_end: Callable[[EpochReport], None] | None
    observe_model: Callable[[int, nn.Module], None] | None

    def steps(self, epoch: int, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
              ) -> tuple[float | torch.Tensor, int]:
        """One epoch's optimizer steps: the summed loss and the number of steps.

        On CPU the loss is read every step (free there): summed as Python floats (float64,
        like the device-side sum used on GPUs, where a per-step read would synchronise).
        A non-finite loss marks the run diverged and ends the epoch.
        """
        model, optimizer, scaler = self.model, self.optimizer, self.scaler
        precision, on_cpu, memory_format = self.precision, self.on_cpu, self.protocol.memory_format
        loss_total = 0.0
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.train_split.x.device)
        steps = 0
        for step, (xb, yb) in enumerate(batches, start=1):
            xb = xb.contiguous(memory_format=memory_format)
            loss = batch_loss(model, xb, yb, precision)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            steps += 1
            if on_cpu:
                value = loss.item()
                loss_total += value
                if not math.isfinite(value):
                    _mark_diverged(self.result, epoch, step, value)
                    break
            else:
                loss_sum += loss.detach()
                if step % _CUDA_CHECK_EVERY == 0 and not math.isfinite(loss.item()):
                    _mark_diverged(self.result, epoch, step, loss.item())
                    break
        return (loss_total if on_cpu else loss_sum), steps

    def end_epoch(self, epoch: int, epoch_start: float, loss: float | torch.Tensor,
                  steps: int) -> bool:
        """Record the epoch (kink hits, loss, validation accuracy), call the callbacks;
        False when the run diverged and must stop."""
        spec, model, result = self.spec, self.model, self.result
        hits = 0
        for name, module in self.activations:
            layer = sum(module.kink_hits())
            module.reset_kink_hits()
            result.kink_hits_per_layer[name].append(layer)
            hits += layer
        result.kink_hits_per_epoch.append(hits)
        result.kink_hits += hits
        mean_loss = (loss if self.on_cpu else loss.item()) / max(steps, 1)
        # After the reads: on a GPU they wait for the epoch's queued steps to finish.
        result.train_time_s += time.perf_counter() - epoch_start
        if not result.diverged and not math.isfinite(mean_loss):
            _mark_diverged(result, epoch, steps, mean_loss)
        if result.diverged:
            return False
        if self.protocol.scheduler is not None:
            self.protocol.scheduler.step()  # the next epoch's learning rate
        if spec.bn_recalibration:
            _recalibrate_batch_norm(spec, model, self.train_split, self.precision)
        val_acc = accuracy(spec, model, self.val_split, self.precision)
        result.val_accuracy.append(val_acc)
        result.train_loss.append(mean_loss)
        result.epochs_completed = epoch
        seen = epoch * len(self.train_split.y)
        result.samples_per_second = seen / result.train_time_s if result.train_time_s else 0.0
        log.debug("epoch %d: val_accuracy=%.4f loss=%.4f kink_hits=%d",
                  epoch, val_acc, mean_loss, hits)
        if self.observe_model is not None:
            self.observe_model(epoch, model)
        if self.on_epoch_end is not None:
            self.on_epoch_end(EpochReport(epoch, val_acc, mean_loss, hits,
                                          time.perf_counter() - epoch_start))
        return True


def _augmentation(
    spec: TrainSpec, data_channels: int, dtype: torch.dtype, device: torch.device
) -> CropFlip | None:
    """``spec.augment``'s per-epoch augmentation, padding with a prepared black pixel (a
    gray dataset fed to a 3-channel model: its one value, replicated like its images)."""
    if spec.augment == "none":
        return None

    def prepare(u8: torch.Tensor) -> torch.Tensor:
        return data_mod.prepare_images(
            u8, dataset=spec.dataset, normalize=spec.normalize, dtype=dtype, device=device
        )

    fill = black_pixel(prepare, data_channels, dtype, device)
    return CropFlip(spec.seed, fill.expand(spec.resolved_channels).contiguous())


def _reads_loss_each_step(device: torch.device) -> bool:
    """On CPU the loss is read every step (free there); elsewhere every
    :data:`_CUDA_CHECK_EVERY` steps and once per epoch, so steps queue without waiting."""
    return device.type == "cpu"


def _mark_diverged(result: TrainResult, epoch: int, step: int, loss: float) -> None:
    result.diverged = True
    result.divergence_reason = f"non-finite training loss ({loss}) at epoch {epoch}, step {step}"
    log.warning("run diverged: %s", result.divergence_reason)


# Batches of the training split (in their fixed order) used to recompute batch-norm
# statistics before an evaluation.
_BN_CALIBRATION_BATCHES = 32


@torch.no_grad()
def _recalibrate_batch_norm(
    spec: TrainSpec, model: nn.Module, split: Split, precision: Precision
) -> None:
    """Recompute batch-norm running statistics as exact averages over training batches.

    Running averages updated with a momentum lag far behind the weights in the few hundred
    steps of a short trial (torchvision's MobileNetV3 reached chance-level eval accuracy
    while train-mode accuracy was 85%). Forward passes only: weights, gradients and the
    kink counters are untouched, and the batches are always the same, so it is
    deterministic.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
    model.eval()  # dropout off: the calibration draws no random numbers
    for m in norms:
        m.train()
    end = min(len(split.y), _BN_CALIBRATION_BATCHES * spec.batch_size)
    for batch, start in enumerate(range(0, end, spec.batch_size), start=1):
        xb = shape_for_model(spec, split.rows(start, start + spec.batch_size))
        if len(xb) < 2:
            break  # batch norm needs more than one value per channel in train mode
        # A cumulative moving average, the exact mean over the batches: the factor 1/n that
        # PyTorch uses with momentum=None, but computed here: PyTorch reads n from the
        # device (one synchronisation per layer per batch on a GPU).
        for m in norms:
            m.momentum = 1.0 / batch
        with autocast(precision, xb.device):
            model(xb)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@torch.no_grad()
def accuracy(spec: TrainSpec, model: nn.Module, split: Split, precision: Precision) -> float:
    """The fraction of ``split`` the model classifies right, in eval mode (left there),
    batched as every evaluation of a run (validation each epoch, the final test)."""
    model.eval()
    batch = max(spec.batch_size, 1000 if spec.model == "fc" else 256)
    correct = torch.zeros((), dtype=torch.int64, device=split.x.device)
    for start in range(0, len(split.y), batch):
        xb = shape_for_model(spec, split.rows(start, start + batch))
        with autocast(precision, xb.device):
            logits = model(xb)
        correct += (logits.argmax(dim=1) == split.y[start : start + batch]).sum()
    return correct.item() / len(split.y)


def params_sha256(model: nn.Module) -> str:
    """SHA-256 of every parameter's and persistent buffer's name and bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
