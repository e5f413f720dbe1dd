"""The Section 3 report: the paper's numbers, the intervals, slices summed per cell."""

from __future__ import annotations

import csv
import json

import optuna
import pytest

from hpo.analysis.reproduce.section3 import (
    binomial_ci,
    build_report,
    format_text,
    paper_counts,
    write_report,
)
from hpo.config.reproduce.section3 import plan, section3_config


def test_the_paper_data_is_the_issues_table_out_of_1000() -> None:
    counts = paper_counts()
    assert len(counts) == 35 and {n for _, n in counts.values()} == {1000}
    table = {
        ("depth", "float16"): [871, 999, 1000, 1000, 1000],
        ("depth", "float32"): [54, 258, 463, 647, 697],
        ("width", "float16"): [333, 1000, 1000, 1000, 1000],
        ("width", "float32"): [21, 163, 478, 582, 873],
        ("width", "float64"): [0, 0, 0, 0, 0],
        ("batch_size", "float16"): [1000] * 5,
        ("batch_size", "float32"): [439, 453, 488, 351, 384],
    }
    values = {"depth": (1, 2, 3, 5, 6), "width": (16, 64, 256, 512, 1024),
              "batch_size": (16, 64, 256, 512, 1024)}
    for (sweep, precision), ks in table.items():
        assert [counts[(sweep, v, precision)][0] for v in values[sweep]] == ks
    # Never measured: the float64 depth sweep (stopped before any backward) and batch sweep.
    assert not any(p == "float64" and s in ("depth", "batch_size") for s, _, p in counts)


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.30850),     # 1 - 0.025 ** (1 / 10)
    (10, 10, 0.69150, 1.0),
    (5, 10, 0.18709, 0.81291),
    (463, 1000, 0.43171, 0.49449),
])
def test_the_interval_is_clopper_pearson(k: int, n: int, low: float, high: float) -> None:
    got = binomial_ci(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def _study(p, outcomes: dict[tuple[str, str, int], int], **attrs) -> optuna.Study:
    """An in-memory study of ``p`` with complete trials ``(cell, precision, seed) -> k``."""
    cfg = section3_config(p, "sqlite:///unused.db")
    study = optuna.create_study(study_name=cfg.name, direction="maximize")
    study.set_user_attr("hpo_config", cfg.to_dict())
    for (cell, precision, seed), k in outcomes.items():
        study.add_trial(optuna.trial.create_trial(
            params={"cell": cell, "precision": precision, "seed": seed},
            distributions=dict(cfg.search_space), value=k / cfg.probe.inits,
            user_attrs={"bifurcated": k, "inits": cfg.probe.inits, "train_samples": 60000,
                        **attrs},
        ))
    return study


def test_slices_are_summed_and_the_shared_cell_is_in_every_sweep() -> None:
    p = plan(inits=50, precisions=("float32", "float64"))  # slices of 25: seeds 0, 25
    study = _study(p, {("L3-n256-b256", "float32", 0): 10, ("L3-n256-b256", "float32", 25): 13,
                       ("L1-n256-b256", "float64", 0): 0})
    r = build_report(study, p, platform={"torch": "x", "cpu_model": "y"})
    by = {(c.sweep, c.value, c.precision): c for c in r.cells}
    assert len(r.cells) == 15 * 2
    for key in (("depth", 3, "float32"), ("width", 256, "float32"),
                ("batch_size", 256, "float32")):
        c = by[key]
        assert (c.bifurcated, c.inits, c.fraction) == (23, 50, 0.46)
        assert (c.ci_low, c.ci_high) == pytest.approx(binomial_ci(23, 50))
    assert by[("depth", 3, "float32")].paper_fraction == 0.463
    assert by[("width", 256, "float32")].paper_fraction == 0.478
    half = by[("depth", 1, "float64")]  # one slice of two done
    assert (half.inits, half.fraction, half.paper_fraction) == (25, 0.0, None)
    missing = by[("batch_size", 16, "float64")]
    assert (missing.inits, missing.fraction, missing.ci_low, missing.paper_fraction) == (
        0, None, None, None)
    assert (r.trials_complete, r.trials_total, r.complete) == (3, 13 * 2 * 2, False)
    assert r.platform_source == "report" and r.platform["torch"] == "x"
    lines = format_text(r)
    assert any(line.startswith("depth") and "23/50  paper 463/1000" in line for line in lines)


def test_a_slice_that_ran_twice_counts_once() -> None:
    p = plan(inits=10, precisions=("float32",))
    study = _study(p, {("L1-n256-b256", "float32", 0): 4})
    cfg = section3_config(p, "sqlite:///unused.db")
    study.add_trial(optuna.trial.create_trial(  # the same slice again
        params={"cell": "L1-n256-b256", "precision": "float32", "seed": 0},
        distributions=dict(cfg.search_space), value=0.4,
        user_attrs={"bifurcated": 4, "inits": 10, "train_samples": 60000}))
    r = build_report(study, p)
    cell = next(c for c in r.cells if c.cell == "L1-n256-b256")
    assert (cell.bifurcated, cell.inits, r.trials_complete) == (4, 10, 1)


def test_json_csv_and_html_carry_every_cell(tmp_path) -> None:
    p = plan(quick=True, precisions=("float16",))
    outcomes = {(name, "float16", 0): 10 for name in p.cells()}
    study = _study(p, outcomes, platform={"torch": "2.x", "cpu_model": "workers' CPU"})
    r = build_report(study, p, platform={"torch": "other"})
    d = json.loads(json.dumps(r.to_dict()))
    assert d["complete"] and d["platform"]["cpu_model"] == "workers' CPU"
    assert d["platform_source"] == "trials"
    keys = {"sweep", "value", "precision", "inits", "fraction", "ci_low", "ci_high",
            "paper_fraction"}
    assert len(d["cells"]) == 9 and all(keys <= set(c) for c in d["cells"])
    assert {c["sweep"] for c in d["cells"]} == {"depth", "width", "batch_size"}
    csv_path, html_path = write_report(r, tmp_path)
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 9 and rows[0]["sweep"] == "depth" and rows[0]["fraction"] == "1"
    page = html_path.read_text()
    assert page.count("plotly.js v") <= 2 and "paper (1000 inits)" in page
    assert "depth sweep" in page and "batch_size sweep" in page
    assert any("platform (trials)" in line for line in format_text(r))
