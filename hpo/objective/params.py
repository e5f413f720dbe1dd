"""A trial's parameters: one value per search-space entry, asked of the trial.

Shared by both objectives (:mod:`hpo.objective.train`, :mod:`hpo.objective.probe`); a trial
popped from the queue (a baseline, a twin, a re-queued trial) already holds its values, and
Optuna returns those instead of sampling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

__all__ = ["suggest_params"]


def suggest_params(
    trial: optuna.trial.BaseTrial, space: Mapping[str, BaseDistribution]
) -> dict[str, Any]:
    """Ask ``trial`` for one value per search-space entry, in the space's order."""
    params: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, FloatDistribution):
            params[name] = trial.suggest_float(
                name, dist.low, dist.high, step=dist.step, log=dist.log
            )
        elif isinstance(dist, IntDistribution):
            params[name] = trial.suggest_int(
                name, dist.low, dist.high, step=dist.step, log=dist.log
            )
        elif isinstance(dist, CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, dist.choices)
        else:  # pragma: no cover - the config only builds the three kinds above
            raise TypeError(f"unsupported distribution for {name!r}: {dist!r}")
    return params
