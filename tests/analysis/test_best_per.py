from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from hpo.analysis.best_per import best_per_value
from hpo.errors import ConfigError

DISTS = {"relu_prime_zero": CategoricalDistribution([0.0, 1.0]),
         "lr": CategoricalDistribution([0.01, 0.1])}


def _study(direction: str = "maximize") -> optuna.Study:
    study = optuna.create_study(direction=direction)
    for (alpha, lr), value in {(0.0, 0.01): 0.80, (0.0, 0.1): 0.90, (1.0, 0.01): 0.85,
                               (1.0, 0.1): 0.10}.items():
        study.add_trial(create_trial(params={"relu_prime_zero": alpha, "lr": lr},
                                     distributions=DISTS, value=value))
    study.add_trial(create_trial(params={"relu_prime_zero": 1.0, "lr": 0.1},
                                 distributions=DISTS, state=TrialState.FAIL))
    return study


def test_best_per_value_picks_each_values_best_trial_and_its_lr():
    table = best_per_value(_study(), "relu_prime_zero")
    assert table["relu_prime_zero"].tolist() == [0.0, 1.0]
    assert table["best_value"].tolist() == [0.90, 0.85]
    assert table["lr"].tolist() == [0.1, 0.01]
    assert table["trials"].tolist() == [2, 2]
    low = best_per_value(_study("minimize"), "relu_prime_zero")
    assert low["best_value"].tolist() == [0.80, 0.10]


def test_unknown_parameter_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"parameter 'alpha'.*\['lr', 'relu_prime_zero'\]"):
        best_per_value(_study(), "alpha")
