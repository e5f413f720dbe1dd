"""A fake training function: sleeps like a run, reports every epoch, returns a TrainResult;
a closed gate holds each run at its end, so a test acts while a run is provably in progress.

Light on purpose (no torch): worker processes that import it start in a fraction of a
second. The accuracy is a smooth function of ReLU'(0), so samplers have something to find.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.engine.result import TrainResult

__all__ = ["FakeTrain", "OutOfMemory"]


@dataclass(frozen=True)
class _EpochReport:  # the fields of hpo.engine.train.EpochReport that the objective reads
    epoch: int
    val_accuracy: float
    train_loss: float
    kink_hits: int
    elapsed_s: float


class OutOfMemory(RuntimeError):
    """Stands in for torch.OutOfMemoryError where torch is not imported."""


class FakeTrain:
    """``train(spec, *, data_dir, on_epoch_end)`` that sleeps ``seconds`` per run.

    Args:
        seconds: the simulated training time, spread over the spec's epochs.
        mode: ``ok``; ``nan`` (the loss diverges: ``diverged=True``); ``nan-value`` (returns
            a NaN accuracy without flagging divergence); ``oom`` (raises
            torch.OutOfMemoryError); ``oom-odd`` (only trials with an odd seed do).
        marker: a file that holds the running spec's ReLU'(0) and seed as JSON while a run
            is in progress, and is empty between runs.
        gate: a file; once a run has trained (its epochs reported) it waits until the file
            exists before it returns, so a test can act while the run is in progress.
        gate_after: the number of this process's first runs that pass the gate unheld.
    """

    def __init__(self, seconds: float = 0.5, mode: str = "ok", marker: Path | None = None,
                 gate: Path | None = None, gate_after: int = 0) -> None:
        self.seconds = seconds
        self.mode = mode
        self.marker = marker
        self.gate = gate
        self.gate_after = gate_after
        self.calls = 0

    def __call__(self, spec: Any, *, data_dir: Any = None, on_epoch_end: Any = None):
        self.calls += 1
        if self.marker is not None:  # what this process is running now, for the tests
            self.marker.write_text(json.dumps({"relu_prime_zero": spec.relu_prime_zero,
                                               "seed": spec.seed}))
        try:
            return self._run(spec, on_epoch_end)
        finally:
            if self.marker is not None:
                self.marker.write_text("")

    def _run(self, spec: Any, on_epoch_end: Any) -> TrainResult:
        if self.mode == "oom" or (self.mode == "oom-odd" and spec.seed % 2):
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        result = TrainResult(device="cpu", precision=spec.precision, torch_version="fake",
                             params_sha256="0" * 64, configured_activations=spec.depth)
        alpha = spec.relu_prime_zero or 0.0
        for epoch in range(1, spec.epochs + 1):
            time.sleep(self.seconds / spec.epochs)
            acc = 0.8 + 0.1 * math.exp(-((alpha - 0.3) ** 2) * 10) + 0.001 * epoch
            if self.mode == "nan" and epoch == spec.epochs:
                result.diverged = True
                result.divergence_reason = f"train loss is nan at epoch {epoch}"
                break
            if self.mode == "nan-value":
                acc = math.nan
            result.val_accuracy.append(acc)
            result.train_loss.append(0.1)
            result.kink_hits_per_epoch.append(epoch)
            result.kink_hits += epoch
            result.epochs_completed = epoch
            if on_epoch_end is not None:
                on_epoch_end(_EpochReport(epoch, acc, 0.1, epoch, self.seconds / spec.epochs))
        result.test_accuracy = 0.85
        result.wall_time_s = self.seconds
        if self.gate is not None and self.calls > self.gate_after:
            while not self.gate.exists():  # a stop signal interrupts this like a real run
                time.sleep(0.02)
        return result
