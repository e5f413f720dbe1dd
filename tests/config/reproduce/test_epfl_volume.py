"""The EPFL volume plan: their four sweeps, their protocol as probe options, quick sizing."""

from __future__ import annotations

import pytest

from hpo.config.reproduce.epfl_volume import epfl_volume_config, plan
from hpo.config.study import StudyConfig
from hpo.errors import ConfigError
from hpo.objective.probe import ProbeObjective


def test_the_full_plan_is_their_notebook() -> None:
    p = plan()
    assert p.name == "epfl-volume-k100" and p.inits == 100 and p.images is None
    cells = p.cells()
    # 20 points, the depth sweep's L3 and the batch sweep's b256 being the same net
    assert len(p.points()) == 20 and len(cells) == 19
    assert cells["L4-n4-b256"] == {"depth": 4, "width": 4, "batch_size": 256}
    assert cells["L3-n32-b64-s40000"] == {"depth": 3, "width": 32, "batch_size": 64,
                                          "sample_size": 40000}
    cfg = epfl_volume_config(p, "sqlite:///x.db")
    assert cfg.n_trials == 19 * 3 * 4  # 100 inits in slices of 25
    probe = cfg.probe
    assert (probe.accumulate, probe.shuffle, probe.loss_dtype) == (True, False, "param")
    assert (probe.compare, probe.train_set, probe.sample_size) == ("first_weight", "all", None)
    assert cfg.fixed["kink_grad"] == "set" and cfg.fixed["normalize"] is False
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg  # the new probe options are stored


def test_quick_says_so_and_is_smaller() -> None:
    p = plan(quick=True)
    assert p.name == "epfl-volume-quick-k6-images5000"
    cells = p.cells()
    assert len(cells) == 7 and cells["L1-n32-b256"]["train_subset"] == 5000
    assert "train_subset" not in cells["L3-n32-b64-s10000"]  # drawn from all 60000
    assert plan(precisions=("float64", "float32")).precisions == ("float32", "float64")


class _Trial:
    def __init__(self, params):
        self.params = params

    def suggest_categorical(self, name, choices):
        return self.params[name]


def test_a_cells_sample_size_goes_to_the_probe_not_the_spec() -> None:
    cfg = epfl_volume_config(plan(sweeps={"sample_size": (20000,), "depth": (2,)}), "x")
    seen = []

    def fake(spec, **kwargs):
        seen.append((spec, kwargs))
        raise RuntimeError("stop")

    objective = ProbeObjective(cfg, probe_fn=fake)
    for cell in ("L3-n32-b64-s20000", "L2-n32-b256"):
        with pytest.raises(RuntimeError):
            objective(_Trial({"cell": cell, "precision": "float16", "seed": 0}))
    (sampled, kw), (plain, kw2) = seen
    assert kw["sample_size"] == 20000 and sampled.batch_size == 64 and sampled.depth == 3
    assert "sample_size" not in kw2 and plain.depth == 2 and plain.precision == "float16"
    assert kw["accumulate"] and kw["shuffle"] is False and kw["loss_dtype"] == "param"


@pytest.mark.parametrize("kwargs, match", [
    (dict(inits=0), "--inits 0"),
    (dict(precisions=("bfloat16",)), "--precisions"),
    (dict(images=0), "images 0"),
    (dict(sweeps={"height": (1,)}), "sweeps"),
])
def test_bad_options_are_one_line_errors(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        plan(**kwargs)
