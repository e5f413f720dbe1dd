"""A reproduction's study: every combination of its grid once, long trials kept alive.

The grid targets (section3, section4, epfl-initial, epfl-fc, epfl-volume) search
categorical choices only (``cell``, ``precision``, ``seed``...); :func:`grid_study` turns
that space into the one StudyConfig shape they share: a grid sampler (seed 0, so workers
shuffle alike), no pruner, no baseline, and a heartbeat that keeps minutes-long trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optuna.distributions import CategoricalDistribution

from hpo.config.study import (
    HeartbeatConfig,
    ProbeConfig,
    PrunerConfig,
    SamplerConfig,
    StudyConfig,
)

__all__ = ["LONG_TRIALS", "grid_study"]

# A float16 slice or epoch takes minutes on a CPU: beat every 10 s, stale after 60 s.
LONG_TRIALS = HeartbeatConfig(interval=10, grace=60, max_retry=3)


def grid_study(
    name: str, storage: str, space: Mapping[str, CategoricalDistribution],
    fixed: Mapping[str, Any], *, metric: str, source: str, objective: str = "train",
    probe: ProbeConfig | None = None, cells: Mapping[str, Mapping[str, Any]] | None = None,
) -> StudyConfig:
    """The grid study over ``space`` (each combination once: ``n_trials`` is the product
    of the choice counts), training ``fixed`` plus each trial's choices.

    Args:
        cells: cell name -> settings, when the space has a ``cell`` choice.
    """
    grid = {key: tuple(dist.choices) for key, dist in space.items()}
    return StudyConfig(
        name=name, direction="maximize", metric=metric, storage=storage,
        n_trials=math.prod(len(values) for values in grid.values()), timeout=None,
        sampler=SamplerConfig(name="grid", options={"seed": 0}, grid=grid),
        pruner=PrunerConfig(name="none"), heartbeat=LONG_TRIALS, fixed=dict(fixed),
        search_space=dict(space), baseline=None, source=source, objective=objective,
        probe=probe, cells=None if cells is None else dict(cells),
    )
