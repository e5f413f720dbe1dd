"""The epfl-fc plan and its study: cells, grid, names, validation."""

from __future__ import annotations

import pytest

from hpo.config.reproduce.epfl_fc import (
    GRIDS,
    QUICK_SUBSET,
    cell_name,
    epfl_fc_config,
    plan,
)
from hpo.errors import ConfigError


def test_the_full_plan_is_both_grids_both_kinks_three_precisions_five_seeds() -> None:
    p = plan()
    cells = p.cells()
    assert len(cells) == 2 * 5 * 2
    assert cells["10ep-a8-set"] == {"relu_prime_zero": 8.0, "kink_grad": "set", "epochs": 10}
    assert cells["50ep-a-0.5-multiply"]["epochs"] == 50
    cfg = epfl_fc_config(p, "sqlite:///unused.db")
    assert cfg.name == "epfl-fc-s5" and cfg.n_trials == 20 * 3 * 5
    assert cfg.sampler.name == "grid" and set(cfg.sampler.grid) == {"cell", "precision", "seed"}
    assert cfg.sampler.grid["precision"] == ("float32", "bfloat16", "float16")
    assert cfg.sampler.grid["seed"] == (0, 1, 2, 3, 4)
    spec = cfg.train_spec({"cell": "50ep-a-0.5-set", "precision": "bfloat16", "seed": 3})
    assert (spec.relu_prime_zero, spec.kink_grad, spec.epochs, spec.seed) == (-0.5, "set", 50, 3)
    assert (spec.depth, spec.width, spec.batch_size, spec.lr, spec.normalize) == (
        3, 200, 128, 1e-3, False)
    # Negative alphas are allowed, and said not to be subgradients.
    assert spec.notes() and "not a subgradient" in spec.notes()[0]
    assert GRIDS["10ep"] == ((0.0, 1.0, 2.0, 4.0, 8.0), 10)


def test_quick_says_so_in_its_name_and_uses_fewer_cells_and_images() -> None:
    p = plan(quick=True)
    assert p.name == "epfl-fc-quick-s5" and p.train_subset == QUICK_SUBSET
    assert len(p.cells()) == 12 and max(v["epochs"] for v in p.cells().values()) == 3
    cfg = epfl_fc_config(p, "sqlite:///unused.db")
    assert cfg.fixed["train_subset"] == QUICK_SUBSET
    assert plan(quick=True, train_subset=500, precisions=("float32",)).name == (
        "epfl-fc-quick-s5-subset500-float32")
    assert cell_name("50ep", -0.5, "multiply") == "50ep-a-0.5-multiply"


@pytest.mark.parametrize("kwargs, word", [
    ({"seeds": 1}, "--seeds 1"),
    ({"precisions": ("float64",)}, "--precisions"),
    ({"train_subset": 59001}, "--train-subset 59001"),
])
def test_bad_options_are_one_line_naming_the_value(kwargs, word) -> None:
    with pytest.raises(ConfigError) as err:
        plan(**kwargs)
    assert word in str(err.value) and "fix:" in str(err.value) and "\n" not in str(err.value)
