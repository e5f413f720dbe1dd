"""The best trial per value of one parameter: the paper's Section 4.3 comparison.

"For each ReLU'(0), tune the learning rate, then compare the best accuracies": with a grid
over ``relu_prime_zero`` x ``lr``, :func:`best_per_value` gives one row per ReLU'(0) value
with its best objective value and the settings (the learning rate) that reached it. A
difference between the rows that survives the tuning is not a learning-rate effect.

Reads completed trials through Optuna's public API only.
"""

from __future__ import annotations

import optuna
import pandas as pd
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpo.errors import ConfigError

__all__ = ["best_per_value"]


def best_per_value(study: optuna.Study, param: str) -> pd.DataFrame:
    """One row per value of ``param`` among the completed trials, sorted by that value:
    ``param``, ``best_value`` (by the study's direction), ``trial`` (its number), ``trials``
    (how many completed trials had that value) and the best trial's other parameters.

    Raises:
        ConfigError: no completed trial has ``param`` (naming the parameters there are).
    """
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    having = [t for t in trials if param in t.params and t.value is not None]
    if not having:
        names = sorted({p for t in trials for p in t.params})
        raise ConfigError(
            f"No completed trial of study {study.study_name!r} has parameter {param!r}; "
            f"its parameters are {names}."
        )
    maximize = study.direction == StudyDirection.MAXIMIZE
    best: dict[object, optuna.trial.FrozenTrial] = {}
    counts: dict[object, int] = {}
    for t in having:
        key = t.params[param]
        counts[key] = counts.get(key, 0) + 1
        held = best.get(key)
        if held is None or (t.value > held.value if maximize else t.value < held.value):
            best[key] = t
    rows = [
        {param: key, "best_value": t.value, "trial": t.number, "trials": counts[key],
         **{k: v for k, v in sorted(t.params.items()) if k != param}}
        for key, t in best.items()
    ]
    return pd.DataFrame(rows).sort_values(param, kind="stable").reset_index(drop=True)
