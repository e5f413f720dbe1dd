"""The epfl-hpo plan: four ordinary studies matching their Ray Tune searches."""

from __future__ import annotations

import optuna
import pytest

from hpo.config.reproduce.epfl_hpo import epfl_hpo_config, plan
from hpo.config.samplers import make_pruner, make_sampler
from hpo.errors import ConfigError


def test_with_searches_both_relu6_derivatives_and_without_leaves_pytorchs() -> None:
    p = plan()
    assert p.studies() == [("mobilenet", "with"), ("mobilenet", "without"), ("fc", "with"),
                           ("fc", "without")]
    w = epfl_hpo_config(p, "mobilenet", "with", "sqlite:///unused.db")
    wo = epfl_hpo_config(p, "mobilenet", "without", "sqlite:///unused.db")
    assert (w.name, wo.name) == ("epfl-hpo-mobilenet-with", "epfl-hpo-mobilenet-without")
    assert set(w.search_space) == {"batch_size", "lr", "relu_prime_zero", "relu6_prime_six"}
    assert set(wo.search_space) == {"batch_size", "lr"}
    assert w.search_space["lr"].log and (w.search_space["lr"].low, w.search_space["lr"].high) == (
        1e-4, 1e-2)
    assert w.search_space["batch_size"].choices == (32, 64, 128)
    assert (w.search_space["relu_prime_zero"].low, w.search_space["relu6_prime_six"].high) == (
        0.0, 1.0)
    assert (w.n_trials, w.fixed["epochs"], w.fixed["val_size"]) == (10, 6, 12000)
    assert w.fixed["precision"] == "bfloat16" and w.fixed["activation"] == "relu6"
    assert w.fixed["kink_grad"] == "set" and "kink_grad" not in wo.fixed
    assert isinstance(make_sampler(w.sampler), optuna.samplers.RandomSampler)
    pruner = make_pruner(w.pruner)
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert w.pruner.options == {"min_resource": 3, "reduction_factor": 2,
                                "min_early_stopping_rate": 0}
    spec = w.train_spec({"batch_size": 32, "lr": 1e-3, "relu_prime_zero": 0.3,
                         "relu6_prime_six": 0.7})
    assert (spec.model, spec.channels, spec.relu6_prime_six) == ("mobilenet_v3_small", 3, 0.7)
    fc = epfl_hpo_config(p, "fc", "with", "sqlite:///unused.db")
    assert (fc.n_trials, fc.fixed["epochs"], fc.fixed["depth"], fc.fixed["width"]) == (
        12, 10, 1, 2000)


def test_quick_and_multiply_say_so_in_the_names() -> None:
    p = plan(quick=True, models=("fc",), kink_grad="multiply")
    cfg = epfl_hpo_config(p, "fc", "with", "sqlite:///unused.db")
    assert cfg.name == "epfl-hpo-quick-fc-with-multiply" and cfg.fixed["train_subset"] == 5000
    assert cfg.fixed["kink_grad"] == "multiply" and cfg.n_trials < 12


@pytest.mark.parametrize("kwargs, word", [
    ({"models": ("resnet",)}, "--models"),
    ({"kink_grad": "add"}, "--kink-grad 'add'"),
])
def test_bad_options_are_one_line(kwargs, word) -> None:
    with pytest.raises(ConfigError) as err:
        plan(**kwargs)
    assert word in str(err.value) and "fix:" in str(err.value)
