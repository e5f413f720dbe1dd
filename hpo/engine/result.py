"""What one training run reports: :class:`TrainResult`, filled by :mod:`hpo.engine.train`
and stored by the objective as a trial's ``result`` attribute.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainResult"]


@dataclass
class TrainResult:
    """What a run reports. ``val_accuracy`` has one value per completed epoch."""

    val_accuracy: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_accuracy: float | None = None
    kink_hits: int = 0
    kink_hits_per_epoch: list[int] = field(default_factory=list)
    kink_hits_per_layer: dict[str, list[int]] = field(default_factory=dict)
    configured_activations: int = 0
    diverged: bool = False
    divergence_reason: str | None = None
    epochs_completed: int = 0
    params_sha256: str = ""
    device: str = "cpu"
    precision: str = "float32"
    optimizer_eps: float | None = None
    torch_version: str = ""
    wall_time_s: float = 0.0
    train_time_s: float = 0.0
    samples_per_second: float = 0.0
    train_samples: int = 0
    threads: int = 0  # torch CPU threads: some CPU kernels' bits depend on it
    # hpo.engine.numerics.platform.platform_record, read inside the run's numerics flags
    platform: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
