"""The EPFL reproduction's FC sweep (``hpo reproduce epfl-fc``) as an ordinary train study.

Martorella et al. (ReScience C 2023), ``notebooks/fully_connected_experiment.ipynb``: FC
784-200-200-200-10 on MNIST, Adam lr 1e-3, batch 128, ToTensor inputs, test accuracy after
10 epochs for ReLU'(0) in {0,1,2,4,8} and after 50 epochs for {0,-0.5,0.5,0.8,1}, one seed.
Here: both grids (:data:`GRIDS`) at float32, bfloat16 and float16, ``kink_grad`` set (their
code) and multiply (the chain rule), K seeds paired by seed. A grid sampler over ``cell``
(grid, alpha, kink_grad), ``precision`` and ``seed``, as :mod:`hpo.config.reproduce.section3`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import CategoricalDistribution

from hpo.config.reproduce.grid import grid_study
from hpo.config.study import StudyConfig
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError

__all__ = [
    "FIXED",
    "GRIDS",
    "KINK_GRADS",
    "PRECISIONS",
    "QUICK_GRIDS",
    "QUICK_SUBSET",
    "EpflFcPlan",
    "cell_name",
    "epfl_fc_config",
    "plan",
]

# grid name -> (alphas, epochs): their two sweeps (the 50-epoch one is their report's 4.2).
GRIDS: Mapping[str, tuple[tuple[float, ...], int]] = {
    "10ep": ((0.0, 1.0, 2.0, 4.0, 8.0), 10),
    "50ep": ((0.0, -0.5, 0.5, 0.8, 1.0), 50),
}
# --quick: each grid's alpha 0, its largest alpha and one other, 2 and 3 epochs.
QUICK_GRIDS: Mapping[str, tuple[tuple[float, ...], int]] = {
    "10ep": ((0.0, 1.0, 8.0), 2),
    "50ep": ((0.0, -0.5, 1.0), 3),
}
QUICK_SUBSET = 4000  # --quick: the first 4000 training images
PRECISIONS = ("float32", "bfloat16", "float16")
KINK_GRADS = ("set", "multiply")
DEFAULT_SEEDS = 5
# Their protocol (ristretto/utils/default/_default.py at 0b14c6e), the same for every cell.
# The engine always scores a validation split: 1000 images are held out of the 60000
# (their "validation" is the official test set, our test_accuracy).
FIXED: Mapping[str, Any] = {
    "model": "fc",
    "dataset": "mnist",
    "depth": 3,
    "width": 200,
    "normalize": False,  # ToTensor: pixels / 255
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 1e-3,
    "val_size": 1000,
    "device": "auto",
}


@dataclass(frozen=True)
class EpflFcPlan:
    """What one ``hpo reproduce epfl-fc`` run computes.

    Attributes:
        seeds: training seeds per cell (0 .. seeds - 1, the same for every cell: paired).
        grids: grid name -> (alphas, epochs).
        precisions: the precisions every cell runs at.
        kink_grads: ``set`` (their code) and/or ``multiply`` (the chain rule).
        train_subset: ``None`` (all 59000 training images) or the first N.
        quick: whether this is the ``--quick`` plan.
    """

    seeds: int
    grids: Mapping[str, tuple[tuple[float, ...], int]]
    precisions: tuple[str, ...]
    kink_grads: tuple[str, ...] = KINK_GRADS
    train_subset: int | None = None
    quick: bool = False

    @property
    def name(self) -> str:
        """The study name: a different plan is a different study, the same plan resumes."""
        parts = ["epfl-fc", *(["quick"] if self.quick else []), f"s{self.seeds}"]
        if self.train_subset is not None and not (self.quick and self.train_subset == QUICK_SUBSET):
            parts.append(f"subset{self.train_subset}")
        if tuple(self.precisions) != PRECISIONS:
            parts.append("-".join(self.precisions))
        return "-".join(parts)

    def cells(self) -> dict[str, dict[str, Any]]:
        """Cell name -> settings (ReLU'(0), kink_grad, epochs), grid by grid."""
        return {
            cell_name(grid, alpha, kink): {"relu_prime_zero": alpha, "kink_grad": kink,
                                           "epochs": epochs}
            for grid, (alphas, epochs) in self.grids.items()
            for alpha in alphas
            for kink in self.kink_grads
        }


def cell_name(grid: str, alpha: float, kink: str) -> str:
    """``10ep-a0.5-set`` for the 10-epoch grid, ReLU'(0) = 0.5, kink_grad set."""
    return f"{grid}-a{alpha:g}-{kink}"


def plan(
    *, seeds: int | None = None, quick: bool = False, train_subset: int | None = None,
    precisions: tuple[str, ...] = PRECISIONS,
) -> EpflFcPlan:
    """The plan for ``hpo reproduce epfl-fc`` options (``--quick``: :data:`QUICK_GRIDS` on
    the first :data:`QUICK_SUBSET` images unless ``train_subset`` is given).

    Raises:
        ConfigError: ``seeds`` below 2, an unknown precision, or a bad ``train_subset``.
    """
    seeds = DEFAULT_SEEDS if seeds is None else seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2:
        raise ConfigError(
            f"--seeds {seeds!r} is not allowed: an integer >= 2 (a spread needs two seeds; "
            f"the verdicts need {DEFAULT_SEEDS}); fix: e.g. --seeds 5."
        )
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise ConfigError(
            f"--precisions {list(precisions)!r}: allowed any of {list(PRECISIONS)}; fix: "
            "e.g. --precisions float32 bfloat16."
        )
    if quick and train_subset is None:
        train_subset = QUICK_SUBSET
    limit = 60000 - int(FIXED["val_size"])
    if train_subset is not None and (
        isinstance(train_subset, bool) or not isinstance(train_subset, int)
        or not 1 <= train_subset <= limit
    ):
        raise ConfigError(
            f"--train-subset {train_subset!r} is not allowed: 1 to {limit} MNIST training "
            "images; fix: leave it out (their protocol uses all of them)."
        )
    ordered = tuple(p for p in PRECISIONS if p in precisions)
    return EpflFcPlan(seeds=seeds, grids=dict(QUICK_GRIDS if quick else GRIDS),
                      precisions=ordered, train_subset=train_subset, quick=quick)


def epfl_fc_config(p: EpflFcPlan, storage: str) -> StudyConfig:
    """The validated training study for plan ``p`` on ``storage``.

    Raises:
        ConfigError: a cell is not a valid training spec (never for the shipped grids).
    """
    fixed = {**FIXED, **({} if p.train_subset is None else {"train_subset": p.train_subset})}
    cells = p.cells()
    for settings in cells.values():
        TrainSpec.from_dict({**fixed, **settings})  # validates
    space = {
        "cell": CategoricalDistribution(list(cells)),
        "precision": CategoricalDistribution(list(p.precisions)),
        "seed": CategoricalDistribution(list(range(p.seeds))),
    }
    return grid_study(p.name, storage, space, fixed, metric="val_accuracy",
                      source="hpo reproduce epfl-fc", cells=cells)
