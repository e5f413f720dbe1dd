"""The EPFL initial experiment's study: their protocol, the grid, names, refusals."""

from __future__ import annotations

import pytest

from hpo.config.reproduce.epfl_initial import (
    ALPHAS,
    PRECISIONS,
    QUICK_TRAIN_SUBSET,
    epfl_initial_config,
    plan,
)
from hpo.config.study import StudyConfig
from hpo.errors import ConfigError


def test_the_full_plan_is_their_protocol_at_three_precisions_and_five_alphas() -> None:
    p = plan()
    assert p.name == "epfl-initial" and not p.quick and p.train_subset is None
    assert p.precisions == PRECISIONS == ("float32", "bfloat16", "float16")
    assert p.alphas == ALPHAS and 0.0 in p.alphas and 1.0 in p.alphas
    cfg = epfl_initial_config(p, "sqlite:///x.db")
    assert cfg.objective == "diverge" and cfg.metric == "l1_distance"
    assert cfg.n_trials == 15 and cfg.sampler.name == "grid"
    assert cfg.sampler.grid == {"precision": PRECISIONS, "relu_prime_zero": ALPHAS}
    spec = cfg.train_spec({"precision": "bfloat16", "relu_prime_zero": 1.0})
    assert (spec.depth, spec.width, spec.seed, spec.epochs, spec.batch_size) == (
        1, 2000, 42069, 2, 128)
    assert (spec.optimizer, spec.lr, spec.shuffle, spec.normalize, spec.kink_grad) == (
        "adam", 1e-3, False, False, "set")
    assert spec.train_subset is None and spec.val_size == 1


def test_the_stored_config_reads_back_equal() -> None:
    cfg = epfl_initial_config(plan(quick=True), "sqlite:///x.db")
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg


def test_quick_says_so_in_its_name_and_runs_fewer_cells_on_fewer_images() -> None:
    p = plan(quick=True, precisions=("float16", "float32"))
    assert p.quick and p.train_subset == QUICK_TRAIN_SUBSET
    assert p.precisions == ("float32", "float16")  # their order, whatever the order given
    assert p.name == f"epfl-initial-quick-subset{QUICK_TRAIN_SUBSET}-float32-float16"
    assert p.n_trials == 4 and p.alphas == (0.0, 1.0)
    assert epfl_initial_config(p, "sqlite:///x.db").fixed["train_subset"] == QUICK_TRAIN_SUBSET


@pytest.mark.parametrize("kwargs, match", [
    ({"precisions": ("float64",)}, "allowed each of"),
    ({"precisions": ("float32", "float32")}, "at most once"),
    ({"train_subset": 0}, "1 to 59999"),
    ({"train_subset": 60000}, "1 to 59999"),
    ({"train_subset": True}, "1 to 59999"),
])
def test_bad_options_are_one_line_errors(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        plan(**kwargs)
    assert "\n" not in str(err.value) and "fix:" in str(err.value)
