"""The EPFL reproduction's volume experiment as one probe study, with their protocol.

Martorella et al. (ReScience C 2023), ``notebooks/Volume estimation.ipynb``: fc ReLU nets on
MNIST (ToTensor inputs), 100 inits per cell, two nets (ReLU'(0) = 0 and 1) see one pass in
order without ``zero_grad``; an init counts when the first Linear's accumulated weight
gradients differ after some mini-batch. Four sweeps (:data:`SWEEPS`), at float16 (true
``.half()``, the loss in float16), float32 and float64. The study: ``objective: probe`` with
``accumulate``, ``shuffle: false``, ``loss_dtype: param``; a grid over ``cell``,
``precision`` and ``seed`` (a slice of inits), as :mod:`hpo.config.reproduce.section3`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import CategoricalDistribution

from hpo.config.reproduce.grid import grid_study
from hpo.config.reproduce.section3 import slice_size
from hpo.config.study import (
    ProbeConfig,
    StudyConfig,
)
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError

__all__ = [
    "FIXED",
    "PRECISIONS",
    "QUICK_IMAGES",
    "QUICK_INITS",
    "QUICK_SWEEPS",
    "SWEEPS",
    "EpflVolumePlan",
    "cell_name",
    "epfl_volume_config",
    "plan",
]

# sweep -> (the settings it holds fixed, the values it sweeps), as in their notebook.
SWEEPS: Mapping[str, tuple[Mapping[str, int], tuple[int, ...]]] = {
    "depth": ({"width": 32, "batch_size": 256}, (1, 2, 3, 5, 6)),
    "width": ({"depth": 4, "batch_size": 256}, (4, 8, 16, 32, 64)),
    "batch_size": ({"depth": 3, "width": 32}, (16, 32, 64, 128, 256)),
    "sample_size": ({"depth": 3, "width": 32, "batch_size": 64},
                    (10000, 20000, 40000, 50000, 60000)),
}
PRECISIONS = ("float16", "float32", "float64")
# --quick: each sweep's two ends (the sample sweep: its smallest), 6 inits, and a pass over
# the first 5,000 training images instead of 60,000 (sized by a measured run: README).
QUICK_SWEEPS: Mapping[str, tuple[int, ...]] = {
    "depth": (1, 6),
    "width": (4, 64),
    "batch_size": (16, 256),
    "sample_size": (10000,),
}
QUICK_INITS = 6
QUICK_IMAGES = 5000
FIXED: Mapping[str, Any] = {
    "model": "fc",
    "dataset": "mnist",
    "batch_norm": False,
    "normalize": False,  # transforms.ToTensor(): pixels / 255
    "kink_grad": "set",  # their ReLU backward sets the gradient at 0 to alpha
    "device": "auto",
}


@dataclass(frozen=True)
class EpflVolumePlan:
    """What one ``hpo reproduce epfl-volume`` run computes.

    Attributes:
        inits: initialisations per (cell, precision) (theirs: 100).
        sweeps: the swept values per sweep (``depth``, ``width``, ``batch_size``,
            ``sample_size``).
        precisions: the precisions every cell runs at.
        images: ``None`` (their pass: all 60,000 images) or the first N images per pass
            for the depth, width and batch sweeps (``--quick`` and tests: not their protocol).
        quick: whether this is the ``--quick`` plan.
    """

    inits: int
    sweeps: Mapping[str, tuple[int, ...]]
    precisions: tuple[str, ...]
    images: int | None = None
    quick: bool = False

    @property
    def name(self) -> str:
        """The study name: a different plan is a different study, the same plan resumes."""
        parts = ["epfl-volume", *(["quick"] if self.quick else []), f"k{self.inits}"]
        if self.images is not None:
            parts.append(f"images{self.images}")
        if tuple(self.precisions) != PRECISIONS:
            parts.append("-".join(self.precisions))
        if not self.quick and {k: tuple(v) for k, v in self.sweeps.items()} != {
            k: v for k, (_, v) in SWEEPS.items()
        }:
            parts.append("custom")
        return "-".join(parts)

    def cells(self) -> dict[str, dict[str, int]]:
        """Cell name -> settings (TrainSpec keys, plus ``sample_size`` for the probe), each
        distinct configuration once, in sweep order."""
        out: dict[str, dict[str, int]] = {}
        for sweep, value, name in self.points():
            settings = _settings(sweep, value)
            if self.images is not None and sweep != "sample_size":
                settings["train_subset"] = self.images
            out.setdefault(name, settings)
        return out

    def points(self) -> list[tuple[str, int, str]]:
        """``(sweep, value, cell name)`` for every reported point, in sweep order."""
        return [
            (sweep, value, cell_name(_settings(sweep, value)))
            for sweep, values in self.sweeps.items()
            for value in values
        ]


def _settings(sweep: str, value: int) -> dict[str, int]:
    return {**SWEEPS[sweep][0], sweep: value}


def cell_name(settings: Mapping[str, int]) -> str:
    """``L3-n32-b256``; a sample-size cell ends with ``-s<N>`` (N images drawn)."""
    name = f"L{settings['depth']}-n{settings['width']}-b{settings['batch_size']}"
    return name + (f"-s{settings['sample_size']}" if "sample_size" in settings else "")


def plan(
    *, inits: int | None = None, quick: bool = False, precisions: tuple[str, ...] = PRECISIONS,
    images: int | None = None, sweeps: Mapping[str, tuple[int, ...]] | None = None,
) -> EpflVolumePlan:
    """The plan for ``hpo reproduce epfl-volume`` options (``images`` and ``sweeps``: tests
    and custom runs; ``quick`` sets ``images`` to 5,000 unless given).

    Raises:
        ConfigError: ``inits`` below 1, an unknown precision, bad ``images`` or sweeps.
    """
    if inits is None:
        inits = QUICK_INITS if quick else 100
    if isinstance(inits, bool) or not isinstance(inits, int) or inits < 1:
        raise ConfigError(
            f"--inits {inits!r} is not allowed: it must be an integer >= 1 (they used 100); "
            "fix: e.g. --inits 100."
        )
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise ConfigError(
            f"--precisions {list(precisions)!r}: allowed any of {list(PRECISIONS)}; fix: "
            "e.g. --precisions float32 float64."
        )
    if quick and images is None:
        images = QUICK_IMAGES
    if images is not None and (isinstance(images, bool) or not isinstance(images, int)
                               or not 1 <= images <= 60000):
        raise ConfigError(f"images {images!r} is not allowed: 1 to 60000 MNIST training "
                          "images; fix: leave it unset (their protocol uses all 60000).")
    chosen = dict(sweeps or (QUICK_SWEEPS if quick else {k: v for k, (_, v) in SWEEPS.items()}))
    unknown = [s for s in chosen if s not in SWEEPS]
    if unknown or not chosen or not all(chosen.values()):
        raise ConfigError(f"sweeps {chosen!r}: allowed sweeps {list(SWEEPS)}, each with at "
                          "least one value; fix: name known sweeps.")
    ordered = tuple(p for p in PRECISIONS if p in precisions)
    return EpflVolumePlan(inits=inits, sweeps={k: tuple(v) for k, v in chosen.items()},
                          precisions=ordered, images=images, quick=quick)


def epfl_volume_config(p: EpflVolumePlan, storage: str) -> StudyConfig:
    """The validated probe study for plan ``p`` on ``storage``.

    Raises:
        ConfigError: a cell's settings are not a valid training spec (never for the shipped
            sweeps; checked so a change to them cannot store a broken study).
    """
    cells = p.cells()
    for settings in cells.values():
        TrainSpec.from_dict({**FIXED, **{k: v for k, v in settings.items()
                                         if k != "sample_size"}})  # validates
    step = slice_size(p.inits)
    seeds = list(range(0, p.inits, step))
    space = {
        "cell": CategoricalDistribution(list(cells)),
        "precision": CategoricalDistribution(list(p.precisions)),
        "seed": CategoricalDistribution(seeds),
    }
    return grid_study(
        p.name, storage, space, FIXED, metric="bifurcated_fraction",
        source="hpo reproduce epfl-volume", objective="probe", cells=cells,
        probe=ProbeConfig(inits=step, alphas=(0.0, 1.0), compare="first_weight",
                          train_set="all", accumulate=True, shuffle=False, loss_dtype="param"),
    )
