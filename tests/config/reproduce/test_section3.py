"""The Section 3 study: cells (the shared one once), slices of inits, the stored form."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution

from hpo.config.reproduce.section3 import (
    PRECISIONS,
    SWEEPS,
    cell_name,
    plan,
    section3_config,
    slice_size,
)
from hpo.config.study import StudyConfig
from hpo.errors import ConfigError


def test_the_three_sweeps_share_one_cell_run_once_and_reported_thrice() -> None:
    p = plan()
    cells = p.cells()
    assert len(cells) == 13  # 3 x 5 points, the shared L3-n256-b256 once
    assert cells["L3-n256-b256"] == {"depth": 3, "width": 256, "batch_size": 256}
    points = p.points()
    assert len(points) == 15
    shared = [(sweep, value) for sweep, value, name in points if name == "L3-n256-b256"]
    assert shared == [("depth", 3), ("width", 256), ("batch_size", 256)]
    assert [v for s, v, _ in points if s == "width"] == list(SWEEPS["width"])
    assert cell_name({"depth": 6, "width": 256, "batch_size": 256}) in cells


@pytest.mark.parametrize("inits, size", [(100, 25), (10, 10), (30, 15), (29, 1), (1, 1),
                                         (1000, 25), (60, 20)])
def test_slices_are_equal_and_cover_the_inits_exactly(inits: int, size: int) -> None:
    assert slice_size(inits) == size
    assert inits % size == 0 and size <= 25


def test_the_grid_is_cells_x_precisions_x_slices_and_the_seed_is_each_slices_first() -> None:
    cfg = section3_config(plan(inits=100), "sqlite:///x.db")
    assert cfg.sampler.name == "grid" and cfg.objective == "probe"
    assert cfg.sampler.grid["seed"] == (0, 25, 50, 75)
    assert cfg.sampler.grid["precision"] == PRECISIONS
    assert cfg.n_trials == 13 * 3 * 4
    assert cfg.probe.inits == 25 and cfg.probe.train_set == "all"
    assert cfg.probe.compare == "first_weight"  # the paper: the first layer's weight gradient
    spec = cfg.train_spec({"cell": "L5-n256-b256", "precision": "float16", "seed": 50})
    assert (spec.depth, spec.width, spec.batch_size, spec.seed) == (5, 256, 256, 50)
    # The paper's protocol: ToTensor inputs, the whole set, its code's gradient at 0.
    assert spec.normalize is False and spec.train_subset is None
    assert spec.kink_grad == "set" and spec.model == "fc" and spec.dataset == "mnist"


def test_the_stored_config_round_trips_with_its_cells() -> None:
    cfg = section3_config(plan(quick=True, train_subset=500), "sqlite:///x.db")
    back = StudyConfig.from_dict(cfg.to_dict())
    assert back.cells == cfg.cells and back.probe == cfg.probe
    assert back.to_dict() == cfg.to_dict()
    assert back.train_spec({"cell": "L1-n256-b256", "precision": "float32", "seed": 0}).depth == 1
    assert isinstance(back.search_space["cell"], CategoricalDistribution)


def test_an_unknown_cell_is_one_line_naming_it() -> None:
    cfg = section3_config(plan(quick=True), "sqlite:///x.db")
    with pytest.raises(ConfigError, match="cell 'L9-n1-b1' is not a cell"):
        cfg.train_spec({"cell": "L9-n1-b1", "precision": "float32", "seed": 0})


def test_quick_plans_fewer_cells_and_inits_and_names_differ() -> None:
    quick, full = plan(quick=True), plan()
    assert quick.inits == 10 and len(quick.cells()) == 7 and full.inits == 100
    names = {quick.name, full.name, plan(inits=50).name, plan(train_subset=10).name,
             plan(precisions=("float32",)).name}
    assert len(names) == 5
    assert full.name == "section3-k100"


@pytest.mark.parametrize("kwargs, text", [
    ({"inits": 0}, "--inits 0"),
    ({"inits": True}, "--inits True"),
    ({"precisions": ("bfloat16",)}, "'bfloat16'"),
    ({"precisions": ()}, "allowed any of"),
    ({"train_subset": 0}, "--train-subset 0"),
    ({"train_subset": 60001}, "--train-subset 60001"),
])
def test_bad_options_name_the_value(kwargs: dict, text: str) -> None:
    with pytest.raises(ConfigError, match="fix:") as err:
        plan(**kwargs)
    assert text in str(err.value)
