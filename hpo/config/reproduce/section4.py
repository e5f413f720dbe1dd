"""The paper's Section 4 (ReLU'(0) in CIFAR10 / SVHN training) as one grid study per protocol.

Bertoin et al. (NeurIPS 2021), Section 4.3: ResNet18 + SGD on CIFAR10, VGG11 + Adam on CIFAR10
and SVHN, each with and without batch norm; per ReLU'(0) its own tuned learning rate
(``results/best_learning_rates/``, the alphas the paper's ``train_with_best_lr.py`` runs), the
last epoch's test accuracy over independent runs. A study per protocol, built from its study
file (``study_configs/<protocol>_{bn,nobn}.yaml``), grids over cells (alpha, seed): the same
seed at every alpha (same initial weights and batches), so each run pairs with ReLU'(0) = 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution

from hpo.config.reproduce.grid import grid_study
from hpo.config.study import (
    StudyConfig,
    load_study_config,
)
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError

__all__ = [
    "BATCH_NORM",
    "BEST_LR",
    "PROTOCOLS",
    "QUICK",
    "Protocol",
    "Section4Plan",
    "cell_name",
    "plan",
    "section4_configs",
    "study_file",
]

_LR_ROOT = "results/best_learning_rates"  # in github.com/deel-ai/relu-prime


@dataclass(frozen=True)
class Protocol:
    """One of the paper's Section 4 protocols (a model, a dataset, an optimizer)."""

    stem: str  # study file stem: study_configs/<stem>_{bn,nobn}.yaml
    model: str
    dataset: str
    optimizer: str
    epochs: int  # the paper's epochs (read off its result CSV)
    runs: int  # the paper's independent runs per alpha


PROTOCOLS: Mapping[str, Protocol] = {
    p.stem: p for p in (
        Protocol("resnet18_cifar10_sgd", "resnet18", "cifar10", "sgd", 200, 10),
        Protocol("vgg11_cifar10_adam", "vgg11", "cifar10", "adam", 200, 10),
        Protocol("vgg11_svhn_adam", "vgg11", "svhn", "adam", 100, 5),
    )
}
BATCH_NORM = {"both": (False, True), "on": (True,), "off": (False,)}
# (protocol, batch_norm) -> ((alpha, tuned lr), ...): the alphas >= 0 of
# deel-ai/relu-prime results/best_learning_rates/<dataset>/<model>/batch_norm_<B>/<opt>/best_lr.csv
BEST_LR: Mapping[tuple[str, bool], tuple[tuple[float, float], ...]] = {
    ("resnet18_cifar10_sgd", False): ((0.0, 0.01296), (0.2, 0.00419), (0.4, 0.00138),
                                      (0.6, 0.00086), (0.8, 0.00041), (1.0, 0.00063)),
    ("resnet18_cifar10_sgd", True): ((0.0, 0.01202), (0.2, 0.01108), (0.4, 0.00891),
                                     (0.6, 0.00318), (0.8, 0.015), (1.0, 0.01299)),
    ("vgg11_cifar10_adam", False): ((0.0, 0.00035), (2.0, 0.00037), (4.0, 0.00021),
                                    (6.0, 0.00017), (8.0, 0.00028), (10.0, 0.00023),
                                    (50.0, 0.00106)),
    ("vgg11_cifar10_adam", True): ((0.0, 0.00062), (2.0, 0.0007), (4.0, 0.00057),
                                   (6.0, 0.00065), (8.0, 0.00162), (10.0, 0.00099),
                                   (50.0, 0.00025)),
    ("vgg11_svhn_adam", False): ((0.0, 0.00018), (2.0, 0.00014), (4.0, 0.00014),
                                 (6.0, 0.00034), (8.0, 0.00013), (10.0, 0.00014),
                                 (50.0, 8e-05)),
    ("vgg11_svhn_adam", True): ((0.0, 0.00198), (2.0, 0.0035)),
}
# The paper's protocol over the study files' CPU smoke defaults: its code (train.py,
# train_with_best_lr.py, relu.py) has a constant lr, no validation split, and sets the
# gradient at 0 to alpha. Our engine needs a validation split: 5000 images are held out.
FULL: Mapping[str, Any] = {"train_subset": None, "val_size": 5000, "lr_schedule": "none",
                           "kink_grad": "set", "device": "auto"}
# --quick: 1 epoch on a subset (an image folder of the dataset's first images), 2 alphas,
# 2 seeds, device auto (a CPU sanity run; CUDA where there is one). Not comparable.
QUICK: Mapping[str, int] = {"train": 128, "val": 64, "test": 128, "seeds": 2, "epochs": 1}


def study_file(stem: str, batch_norm: bool, root: str | Path | None = None) -> Path:
    """``study_configs/<stem>_{bn,nobn}.yaml`` (``root``: default, the repository's)."""
    base = Path(root) if root is not None else Path(__file__).resolve().parents[3] / "study_configs"
    return base / f"{stem}_{'bn' if batch_norm else 'nobn'}.yaml"


def cell_name(alpha: float, seed: int) -> str:
    """``a0.2-s3`` for ReLU'(0) = 0.2, seed 3."""
    return f"a{alpha:g}-s{seed}"


@dataclass(frozen=True)
class Section4Plan:
    """What one ``hpo reproduce section4`` run computes.

    Attributes:
        protocols: ``(stem, batch_norm)`` pairs, in order.
        seeds: runs per alpha (default: the paper's, per protocol).
        quick: the ``--quick`` plan (1 epoch, a subset, 2 alphas, 2 seeds).
        epochs: overrides the paper's epochs (smoke tests only).
        subsets: ``--quick`` image folders: dataset -> ``imagefolder:PATH`` (set by the runner).
    """

    protocols: tuple[tuple[str, bool], ...]
    seeds: int | None = None
    quick: bool = False
    epochs: int | None = None
    subsets: Mapping[str, str] = field(default_factory=dict)

    def runs(self, stem: str) -> int:
        return self.seeds or (QUICK["seeds"] if self.quick else PROTOCOLS[stem].runs)

    def alphas(self, stem: str, batch_norm: bool) -> tuple[tuple[float, float], ...]:
        """``(alpha, lr)`` pairs run for a protocol (``--quick``: the first and the last)."""
        pairs = BEST_LR[(stem, batch_norm)]
        return (pairs[0], pairs[-1]) if self.quick else pairs

    def study_name(self, stem: str, batch_norm: bool) -> str:
        """A different plan is a different study; the same plan resumes."""
        quick = [f"quick-not-comparable-n{QUICK['train']}"] if self.quick else []
        parts = ["section4", *quick,
                 f"{stem}_{'bn' if batch_norm else 'nobn'}", f"s{self.runs(stem)}"]
        if self.epochs is not None:
            parts.append(f"e{self.epochs}")
        return "-".join(parts)


def plan(
    *, model: str | None = None, dataset: str | None = None, batch_norm: str = "both",
    quick: bool = False, seeds: int | None = None, epochs: int | None = None,
) -> Section4Plan:
    """The plan for ``hpo reproduce section4`` options.

    Raises:
        ConfigError: an unknown model, dataset or batch-norm choice, a combination the paper
            did not run, or ``seeds``/``epochs`` below 1.
    """
    _choice("--model", model, sorted({p.model for p in PROTOCOLS.values()}))
    _choice("--dataset", dataset, sorted({p.dataset for p in PROTOCOLS.values()}))
    _choice("--batch-norm", batch_norm, list(BATCH_NORM))
    for flag, value in (("--seeds", seeds), ("--epochs", epochs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ConfigError(f"{flag} {value!r} is not allowed: an integer >= 1; fix: e.g. "
                              f"{flag} 2.")
    stems = [s for s, p in PROTOCOLS.items()
             if model in (None, p.model) and dataset in (None, p.dataset)]
    if not stems:
        raise ConfigError(
            f"--model {model} --dataset {dataset}: the paper ran no such protocol; allowed: "
            f"{', '.join(f'{p.model} on {p.dataset}' for p in PROTOCOLS.values())}; fix: "
            "change one of them or leave it out."
        )
    protocols = tuple((s, bn) for s in stems for bn in BATCH_NORM[batch_norm])
    return Section4Plan(protocols=protocols, seeds=seeds, quick=quick, epochs=epochs)


def _choice(flag: str, value: str | None, allowed: Sequence[str]) -> None:
    if value is not None and value not in allowed:
        raise ConfigError(f"{flag} {value!r} is not allowed: one of {', '.join(allowed)}; "
                          f"fix: e.g. {flag} {allowed[0]}.")


def _fixed(p: Section4Plan, stem: str, batch_norm: bool, root: str | Path | None) -> dict:
    """The study file's training settings with the paper's protocol (or ``--quick``'s)."""
    base = dict(load_study_config(study_file(stem, batch_norm, root)).fixed)
    if p.quick:
        dataset = p.subsets.get(PROTOCOLS[stem].dataset, base["dataset"])
        over = {"dataset": dataset, "train_subset": QUICK["train"], "val_size": QUICK["val"],
                "lr_schedule": "none", "kink_grad": "set", "device": "auto",
                "epochs": QUICK["epochs"]}
    else:
        over = {**FULL, "epochs": PROTOCOLS[stem].epochs}
    if p.epochs is not None:
        over["epochs"] = p.epochs
    return {**base, **over}


def section4_configs(
    p: Section4Plan, storage: str, *, study_dir: str | Path | None = None
) -> list[StudyConfig]:
    """One validated grid study per protocol of ``p`` on ``storage``.

    Raises:
        ConfigError: a study file is missing or invalid, or a cell is not a valid spec.
    """
    out = []
    for stem, bn in p.protocols:
        fixed = _fixed(p, stem, bn, study_dir)
        cells = {
            cell_name(alpha, seed): {"relu_prime_zero": alpha, "lr": lr, "seed": seed}
            for alpha, lr in p.alphas(stem, bn) for seed in range(p.runs(stem))
        }
        for settings in cells.values():
            TrainSpec.from_dict({**fixed, **settings})  # validates
        space = {"cell": CategoricalDistribution(list(cells))}
        out.append(grid_study(
            p.study_name(stem, bn), storage, space, fixed, metric="val_accuracy",
            source=f"hpo reproduce section4 ({study_file(stem, bn, study_dir).name})",
            cells=cells,
        ))
    return out
