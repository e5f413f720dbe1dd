"""The EPFL reproduction's initial experiment as a grid study of ``objective: diverge``.

Martorella et al., ReScience C 2023, ``notebooks/initial_experiment.ipynb``: FC 784-2000-10,
seed 42069, ToTensor inputs, batch 128 without shuffling, Adam (lr 1e-3), 2 epochs, accuracy
on the official test set; ReLU'(0) = 0 against 1 at float32 and "16-bit" (bfloat16). Here:
float32, bfloat16 and float16, ReLU'(0) in :data:`ALPHAS` (0 is the "0 vs 0" control), the
gradient at 0 *set* to ReLU'(0) as their code did. One trial per (precision, alpha).
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
    "ALPHAS",
    "FIXED",
    "PRECISIONS",
    "QUICK_ALPHAS",
    "QUICK_TRAIN_SUBSET",
    "EpflInitialPlan",
    "epfl_initial_config",
    "plan",
]

PRECISIONS = ("float32", "bfloat16", "float16")
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
# --quick: the control and their alpha = 1 on the first 6000 training images
QUICK_ALPHAS = (0.0, 1.0)
QUICK_TRAIN_SUBSET = 6000
# Their protocol. val_size 1: the engine holds out at least one training image (they trained
# on all 60000); their "validation" is the official test set, measured after every epoch.
FIXED: Mapping[str, Any] = {
    "model": "fc",
    "depth": 1,
    "width": 2000,
    "dataset": "mnist",
    "normalize": False,  # transforms.ToTensor() only
    "batch_size": 128,
    "shuffle": False,  # DataLoader(batch_size=128): no shuffle
    "val_size": 1,
    "optimizer": "adam",
    "lr": 1e-3,
    "epochs": 2,
    "seed": 42069,
    "kink_grad": "set",  # their backward: grad_input[input == 0] = alpha
    "device": "auto",
}


@dataclass(frozen=True)
class EpflInitialPlan:
    """What one ``hpo reproduce epfl-initial`` run computes.

    Attributes:
        precisions: the precisions, each with every alpha.
        alphas: the ReLU'(0) values, each trained beside a ReLU'(0) = 0 reference.
        train_subset: ``None`` (their 60000 images, less the one held out) or the first N.
        quick: whether this is the ``--quick`` plan.
    """

    precisions: tuple[str, ...]
    alphas: tuple[float, ...]
    train_subset: int | None = None
    quick: bool = False

    @property
    def name(self) -> str:
        """The study name: a different plan is a different study, the same plan resumes."""
        parts = ["epfl-initial", *(["quick"] if self.quick else [])]
        if self.train_subset is not None:
            parts.append(f"subset{self.train_subset}")
        if tuple(self.precisions) != PRECISIONS:
            parts.append("-".join(self.precisions))
        return "-".join(parts)

    @property
    def n_trials(self) -> int:
        return len(self.precisions) * len(self.alphas)

    def fixed(self) -> dict[str, Any]:
        """The ``train:`` settings every trial shares."""
        subset = {} if self.train_subset is None else {"train_subset": self.train_subset}
        return {**FIXED, **subset}


def plan(*, quick: bool = False, precisions: tuple[str, ...] | None = None,
         train_subset: int | None = None) -> EpflInitialPlan:
    """The plan for ``hpo reproduce epfl-initial`` options.

    Raises:
        ConfigError: an unknown or repeated precision, or a bad ``train_subset``.
    """
    chosen = tuple(precisions) if precisions else PRECISIONS
    bad = [p for p in chosen if p not in PRECISIONS]
    if bad or len(set(chosen)) != len(chosen):
        raise ConfigError(
            f"--precisions {list(chosen)!r}: allowed each of {list(PRECISIONS)} at most "
            "once; fix: e.g. --precisions float32 bfloat16."
        )
    if train_subset is None and quick:
        train_subset = QUICK_TRAIN_SUBSET
    if train_subset is not None and (
        isinstance(train_subset, bool) or not isinstance(train_subset, int)
        or not 1 <= train_subset <= 59999
    ):
        raise ConfigError(
            f"--train-subset {train_subset!r} is not allowed: 1 to 59999 MNIST training "
            "images; fix: leave it out (their protocol uses them all)."
        )
    ordered = tuple(p for p in PRECISIONS if p in chosen)
    return EpflInitialPlan(precisions=ordered, alphas=QUICK_ALPHAS if quick else ALPHAS,
                           train_subset=train_subset, quick=quick)


def epfl_initial_config(p: EpflInitialPlan, storage: str) -> StudyConfig:
    """The validated diverge study for plan ``p`` on ``storage``.

    Raises:
        ConfigError: the settings are not a valid training spec (never for the shipped
            plan; checked so a change to it cannot store a broken study).
    """
    fixed = p.fixed()
    for precision in p.precisions:
        TrainSpec.from_dict({**fixed, "precision": precision, "relu_prime_zero": 1.0})
    space = {
        "precision": CategoricalDistribution(list(p.precisions)),
        "relu_prime_zero": CategoricalDistribution(list(p.alphas)),
    }
    return grid_study(p.name, storage, space, fixed, metric="l1_distance",
                      source="hpo reproduce epfl-initial", objective="diverge")
