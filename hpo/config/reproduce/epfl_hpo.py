"""The EPFL reproduction's "subgradient as a hyperparameter" searches as ordinary studies.

Martorella et al. (ReScience C 2023), ``notebooks/hyperparameter_tuning_{mobilenet,
fullyconnected}.ipynb``: Ray Tune random search with ASHA (grace 3, reduction 2), batch in
{32, 64, 128}, lr log-uniform in [1e-4, 1e-2], ReLU6 with ReLU6'(0) and ReLU6'(6) uniform in
[0, 1] ("with") or PyTorch's 0 ("without"), bfloat16, scored on a 20% split of the training
set: MobileNetV3-small on 3-channel MNIST (10 trials x 6 epochs) and FC [2000] (12 x 10).
Here: four train studies, Optuna's RandomSampler and SuccessiveHalvingPruner (:data:`SEARCHES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution

from hpo.config.study import HeartbeatConfig, PrunerConfig, SamplerConfig, StudyConfig
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError

__all__ = [
    "KINK_GRADS",
    "MODELS",
    "QUICK",
    "SEARCHES",
    "VARIANTS",
    "EpflHpoPlan",
    "Search",
    "epfl_hpo_config",
    "plan",
]

VARIANTS = ("with", "without")
KINK_GRADS = ("set", "multiply")


@dataclass(frozen=True)
class Search:
    """One model's search: its fixed settings, trials, epochs and the pruner's first rung."""

    model: Mapping[str, Any]  # the model's TrainSpec settings
    trials: int
    epochs: int
    min_resource: int  # ASHA's grace period, in epochs
    train_subset: int | None = None
    val_size: int = 12000  # 20% of the 60000 training images, as theirs


SEARCHES: Mapping[str, Search] = {
    # their model.eval() uses the running batch-norm statistics: no recalibration
    "mobilenet": Search({"model": "mobilenet_v3_small", "channels": 3,
                         "bn_recalibration": False}, trials=10, epochs=6, min_resource=3),
    "fc": Search({"model": "fc", "depth": 1, "width": 2000}, trials=12, epochs=10,
                 min_resource=3),
}
MODELS = tuple(SEARCHES)
# --quick: fewer trials and epochs on a slice of the training set, an earlier first rung.
QUICK: Mapping[str, Search] = {
    # 30 steps leave batch norm's running statistics (momentum 0.01) near their init:
    # the quick run recalibrates them before evaluating, or it measures chance
    "mobilenet": Search({**SEARCHES["mobilenet"].model, "bn_recalibration": True}, trials=3,
                        epochs=2, min_resource=1,
                        train_subset=1000, val_size=500),
    "fc": Search(SEARCHES["fc"].model, trials=6, epochs=4, min_resource=2,
                 train_subset=5000, val_size=2000),
}
# Their protocol (ristretto/utils/_utils.py tune_train_*), the same for every trial.
FIXED: Mapping[str, Any] = {
    "dataset": "mnist",
    "normalize": False,  # ToTensor: pixels / 255
    "activation": "relu6",
    "precision": "bfloat16",
    "optimizer": "adam",
    "device": "auto",
}


@dataclass(frozen=True)
class EpflHpoPlan:
    """What one ``hpo reproduce epfl-hpo`` run computes: a with and a without study per
    model in ``models``, ``kink_grad`` for the tuned derivatives (``set``: their code)."""

    models: tuple[str, ...]
    kink_grad: str = "set"
    quick: bool = False

    def search(self, model: str) -> Search:
        return (QUICK if self.quick else SEARCHES)[model]

    def name(self, model: str, variant: str) -> str:
        """``epfl-hpo-mobilenet-with``; ``-quick`` and ``-multiply`` when they apply."""
        parts = ["epfl-hpo", *(["quick"] if self.quick else []), model, variant]
        if self.kink_grad != "set":
            parts.append(self.kink_grad)
        return "-".join(parts)

    def studies(self) -> list[tuple[str, str]]:
        """``(model, variant)`` of every study, with before without."""
        return [(m, v) for m in self.models for v in VARIANTS]


def plan(*, models: tuple[str, ...] = MODELS, kink_grad: str = "set",
         quick: bool = False) -> EpflHpoPlan:
    """The plan for ``hpo reproduce epfl-hpo`` options.

    Raises:
        ConfigError: an unknown model or kink_grad.
    """
    bad = [m for m in models if m not in SEARCHES]
    if bad or not models:
        raise ConfigError(f"--models {list(models)!r}: allowed any of {list(MODELS)}; fix: "
                          "e.g. --models fc.")
    if kink_grad not in KINK_GRADS:
        raise ConfigError(f"--kink-grad {kink_grad!r}: allowed {list(KINK_GRADS)} (set: their "
                          "code; multiply: the chain rule); fix: e.g. --kink-grad set.")
    return EpflHpoPlan(models=tuple(m for m in MODELS if m in models), kink_grad=kink_grad,
                       quick=quick)


def epfl_hpo_config(p: EpflHpoPlan, model: str, variant: str, storage: str) -> StudyConfig:
    """The validated study for one (model, variant) of plan ``p`` on ``storage``.

    Raises:
        ConfigError: the settings are not a valid training spec (never for the shipped ones).
    """
    s = p.search(model)
    fixed = {**FIXED, **s.model, "epochs": s.epochs, "val_size": s.val_size,
             **({} if s.train_subset is None else {"train_subset": s.train_subset})}
    space: dict[str, Any] = {
        "batch_size": CategoricalDistribution([32, 64, 128]),
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
    }
    if variant == "with":
        fixed["kink_grad"] = p.kink_grad
        space["relu_prime_zero"] = FloatDistribution(0.0, 1.0)
        space["relu6_prime_six"] = FloatDistribution(0.0, 1.0)
    TrainSpec.from_dict({**fixed, "batch_size": 32, "lr": 1e-3})  # validates
    return StudyConfig(
        name=p.name(model, variant),
        direction="maximize",
        metric="val_accuracy",
        storage=storage,
        n_trials=s.trials,
        timeout=None,
        sampler=SamplerConfig(name="random", options={"seed": 0}),
        pruner=PrunerConfig(name="successive_halving", options={
            "min_resource": s.min_resource, "reduction_factor": 2,
            "min_early_stopping_rate": 0}),
        heartbeat=HeartbeatConfig(interval=10, grace=60, max_retry=3),
        fixed=fixed,
        search_space=space,
        baseline=None,
        source="hpo reproduce epfl-hpo",
    )
