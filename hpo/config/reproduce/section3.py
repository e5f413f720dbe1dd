"""The paper's Section 3 (bifurcation volume of MNIST MLPs) as an ordinary probe study.

Bertoin et al. (NeurIPS 2021), Section 3: fully connected ReLU nets on MNIST, ToTensor
inputs, the whole training set, one epoch without updates; an init *bifurcated* when the first
layer's weight gradient differs bitwise between ReLU'(0) = 0 and 1 on some mini-batch. Three
sweeps around width 256, depth 3, batch 256, each at three precisions (:data:`SWEEPS`). The
study: ``objective: probe``, a grid over ``cell`` (:attr:`StudyConfig.cells`), ``precision``
and ``seed`` (a slice of inits). Why: docs/design.md#section-3-as-a-probe-study
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import CategoricalDistribution

from hpo.config.reproduce.grid import grid_study
from hpo.config.study import (
    ProbeConfig,
    StudyConfig,
)
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError

__all__ = [
    "BASE",
    "PRECISIONS",
    "QUICK_INITS",
    "QUICK_SWEEPS",
    "SWEEPS",
    "Section3Plan",
    "cell_name",
    "plan",
    "section3_config",
    "slice_size",
]

SWEEPS: Mapping[str, tuple[int, ...]] = {
    "depth": (1, 2, 3, 5, 6),
    "width": (16, 64, 256, 512, 1024),
    "batch_size": (16, 64, 256, 512, 1024),
}
BASE: Mapping[str, int] = {"depth": 3, "width": 256, "batch_size": 256}
PRECISIONS = ("float16", "float32", "float64")
# --quick: both ends and the shared middle of each sweep (7 cells), 10 inits.
QUICK_SWEEPS: Mapping[str, tuple[int, ...]] = {
    "depth": (1, 3, 6),
    "width": (16, 256, 1024),
    "batch_size": (16, 256, 1024),
}
QUICK_INITS = 10
MAX_SLICE = 25  # inits per trial at most
# The paper's protocol, the same for every cell (see the module docstring).
FIXED: Mapping[str, Any] = {
    "model": "fc",
    "dataset": "mnist",
    "normalize": False,  # ToTensor: pixels / 255, no mean/std
    "kink_grad": "set",  # the paper's code sets the gradient at 0 to ReLU'(0)
    "device": "auto",
}


@dataclass(frozen=True)
class Section3Plan:
    """What one ``hpo reproduce section3`` run computes.

    Attributes:
        inits: initialisations per (cell, precision).
        sweeps: the swept values per sweep (``depth``, ``width``, ``batch_size``).
        precisions: the precisions every cell runs at.
        train_subset: ``None`` (the paper's whole training set) or the first N images
            (smoke tests only: not the paper's protocol).
        quick: whether this is the ``--quick`` plan.
    """

    inits: int
    sweeps: Mapping[str, tuple[int, ...]]
    precisions: tuple[str, ...]
    train_subset: int | None = None
    quick: bool = False

    @property
    def name(self) -> str:
        """The study name: a different plan is a different study, the same plan resumes."""
        parts = ["section3", *(["quick"] if self.quick else []), f"k{self.inits}"]
        if self.train_subset is not None:
            parts.append(f"subset{self.train_subset}")
        if tuple(self.precisions) != PRECISIONS:
            parts.append("-".join(self.precisions))
        return "-".join(parts)

    def cells(self) -> dict[str, dict[str, int]]:
        """Cell name -> settings, each distinct configuration once, in sweep order."""
        out: dict[str, dict[str, int]] = {}
        for sweep, values in self.sweeps.items():
            for value in values:
                settings = {**BASE, sweep: value}
                out.setdefault(cell_name(settings), settings)
        return out

    def points(self) -> list[tuple[str, int, str]]:
        """``(sweep, value, cell name)`` for every reported point, in sweep order."""
        return [
            (sweep, value, cell_name({**BASE, sweep: value}))
            for sweep, values in self.sweeps.items()
            for value in values
        ]


def cell_name(settings: Mapping[str, int]) -> str:
    """``L3-n256-b256`` for depth 3, width 256, batch size 256."""
    return f"L{settings['depth']}-n{settings['width']}-b{settings['batch_size']}"


def slice_size(inits: int) -> int:
    """Inits per trial: the largest divisor of ``inits`` up to 25 (so slices are equal and
    cover ``0 .. inits - 1`` exactly)."""
    return max(d for d in range(1, min(inits, MAX_SLICE) + 1) if inits % d == 0)


def plan(
    *, inits: int | None = None, quick: bool = False, train_subset: int | None = None,
    precisions: tuple[str, ...] = PRECISIONS,
) -> Section3Plan:
    """The plan for ``hpo reproduce section3`` options.

    Raises:
        ConfigError: ``inits`` below 1, an unknown precision, or a bad ``train_subset``.
    """
    if inits is None:
        inits = QUICK_INITS if quick else 100
    if isinstance(inits, bool) or not isinstance(inits, int) or inits < 1:
        raise ConfigError(
            f"--inits {inits!r} is not allowed: it must be an integer >= 1 (the paper used "
            "1000); fix: e.g. --inits 100."
        )
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise ConfigError(
            f"--precisions {list(precisions)!r}: allowed any of {list(PRECISIONS)}; fix: "
            "e.g. --precisions float32 float64."
        )
    if train_subset is not None and (
        isinstance(train_subset, bool) or not isinstance(train_subset, int)
        or not 1 <= train_subset <= 60000
    ):
        raise ConfigError(
            f"--train-subset {train_subset!r} is not allowed: 1 to 60000 MNIST training "
            "images; fix: leave it out (the paper's protocol uses all 60000)."
        )
    ordered = tuple(p for p in PRECISIONS if p in precisions)
    return Section3Plan(inits=inits, sweeps=dict(QUICK_SWEEPS if quick else SWEEPS),
                        precisions=ordered, train_subset=train_subset, quick=quick)


def section3_config(p: Section3Plan, storage: str) -> StudyConfig:
    """The validated probe study for plan ``p`` on ``storage``.

    Raises:
        ConfigError: a cell's settings are not a valid training spec (never for the
            shipped sweeps; checked so a change to them cannot store a broken study).
    """
    fixed = {**FIXED, **({} if p.train_subset is None else {"train_subset": p.train_subset})}
    cells = p.cells()
    for settings in cells.values():
        TrainSpec.from_dict({**fixed, **settings})  # validates
    step = slice_size(p.inits)
    seeds = list(range(0, p.inits, step))
    space = {
        "cell": CategoricalDistribution(list(cells)),
        "precision": CategoricalDistribution(list(p.precisions)),
        "seed": CategoricalDistribution(seeds),
    }
    return grid_study(
        p.name, storage, space, fixed, metric="bifurcated_fraction",
        source="hpo reproduce section3", objective="probe", cells=cells,
        probe=ProbeConfig(inits=step, alphas=(0.0, 1.0), compare="first_weight",
                          train_set="all"),
    )
