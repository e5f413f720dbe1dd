"""The objective a study's ``objective:`` names: training or the bifurcation probe.

The one place that knows both objectives, so neither of their modules imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

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
    for ``train``, :class:`~hpo.objective.probe.ProbeObjective` for ``probe`` (``train_fn``
    unused).

    Raises:
        ConfigError: the study's metric is not one of its objective's.
    """
    if cfg.objective == "probe":
        return ProbeObjective(cfg, data_dir=data_dir)
    return Objective(cfg, train_fn=train_fn, data_dir=data_dir)
