"""The objective a study's ``objective:`` names: training, the bifurcation probe or the
weight divergence beside a ReLU'(0) = 0 reference.

The one place that knows every objective, so none of their modules imports another.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

from hpo.objective.diverge import DivergeObjective
from hpo.objective.probe import ProbeObjective
from hpo.objective.train import Objective, TrainFn

if TYPE_CHECKING:
    from hpo.config.study import StudyConfig

__all__ = ["make_objective"]


def make_objective(
    cfg: StudyConfig,
    *,
    train_fn: TrainFn | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Callable[[optuna.trial.BaseTrial], float]:
    """The objective of the study's ``objective:``: :class:`~hpo.objective.train.Objective`
    for ``train``, :class:`~hpo.objective.probe.ProbeObjective` for ``probe``,
    :class:`~hpo.objective.diverge.DivergeObjective` for ``diverge`` (``train_fn`` unused by
    the last two).

    Raises:
        ConfigError: the study's metric is not one of its objective's.
    """
    if cfg.objective == "probe":
        return ProbeObjective(cfg, data_dir=data_dir)
    if cfg.objective == "diverge":
        return DivergeObjective(cfg, data_dir=data_dir)
    return Objective(cfg, train_fn=train_fn, data_dir=data_dir)
