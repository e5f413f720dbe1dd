"""The EPFL volume report: their counts with their files, intervals, defects per row, the
dashboard pieces, and ``hpo reproduce epfl-volume`` end to end through the service."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from hpo.analysis.reproduce.epfl_volume import (
    build_report,
    figures,
    format_text,
    note_markdown,
    paper_counts,
    write_report,
)
from hpo.analysis.reproduce.section3 import binomial_ci
from hpo.config.reproduce.epfl_volume import epfl_volume_config, plan

ROOT = Path(__file__).resolve().parents[3]
DATA = os.environ.get("HPO_DATA_DIR")


def test_their_counts_are_the_issues_table_each_with_its_file() -> None:
    counts = paper_counts()
    assert len(counts) == 4 * 5 * 3 and {c["inits"] for c in counts.values()} == {100}
    table = {
        ("depth", "float16"): [100] * 5, ("depth", "float32"): [0, 3, 5, 16, 15],
        ("width", "float16"): [8, 99, 100, 100, 100], ("width", "float32"): [0, 1, 6, 5, 23],
        ("batch_size", "float16"): [61, 100, 100, 56, 100],
        ("batch_size", "float32"): [8, 7, 5, 5, 4],
        ("sample_size", "float16"): [97, 100, 100, 100, 100],
        ("sample_size", "float32"): [2, 2, 4, 3, 3],
    }
    values = {"depth": (1, 2, 3, 5, 6), "width": (4, 8, 16, 32, 64),
              "batch_size": (16, 32, 64, 128, 256),
              "sample_size": (10000, 20000, 40000, 50000, 60000)}
    for (sweep, precision), ks in table.items():
        assert [counts[(sweep, v, precision)]["bifurcated"] for v in values[sweep]] == ks
    for (sweep, _, precision), c in counts.items():
        assert c["source"].startswith("notebooks/out/volume_estimation_by_")
        assert c["measured"] == (not (sweep == "depth" and precision == "float64"))
        if precision == "float64":
            assert c["bifurcated"] == 0


def _study(p, outcomes, **attrs) -> optuna.Study:
    cfg = epfl_volume_config(p, "sqlite:///unused.db")
    study = optuna.create_study(study_name=cfg.name, direction="maximize")
    for (cell, precision, seed), k in outcomes.items():
        study.add_trial(optuna.trial.create_trial(
            params={"cell": cell, "precision": precision, "seed": seed},
            distributions=dict(cfg.search_space), value=k / cfg.probe.inits,
            user_attrs={"bifurcated": k, "inits": cfg.probe.inits, "wall_time_s": 2.0,
                        **attrs}))
    return study


def test_rows_carry_ours_theirs_intervals_and_the_defects_that_touch_them(tmp_path) -> None:
    p = plan(inits=50, precisions=("float16", "float64"))  # slices of 25
    study = _study(p, {("L3-n32-b256", "float16", 0): 3, ("L3-n32-b256", "float16", 25): 2,
                       ("L3-n32-b256", "float64", 0): 0, ("L3-n32-b256", "float64", 25): 0},
                   platform={"torch": "2.x"})
    r = build_report(study, p)
    by = {(c.sweep, c.value, c.precision): c for c in r.cells}
    depth, batch = by[("depth", 3, "float16")], by[("batch_size", 256, "float16")]
    assert (depth.bifurcated, depth.inits) == (batch.bifurcated, batch.inits) == (5, 50)
    assert (depth.ci_low, depth.ci_high) == pytest.approx(binomial_ci(5, 50))
    assert (depth.their_bifurcated, depth.their_inits) == (100, 100)
    assert depth.fisher_p < 1e-20 and depth.wall_s == 4.0
    assert "float16-not-bfloat16" in depth.defects and "plot-labels" in batch.defects
    f64 = by[("depth", 3, "float64")]
    assert f64.their_measured is False and f64.fisher_p is None
    assert "float64-never-measured" in f64.defects
    assert by[("batch_size", 256, "float64")].fisher_p == 1.0  # their float64 batch: measured
    assert (r.trials_complete, r.trials_total, r.complete) == (4, 19 * 2 * 2, False)
    assert r.verdict.startswith("epfl-volume [4/76 trials]: float16: ours 10% of inits")
    d = json.loads(json.dumps(r.to_dict()))
    assert d["their_gpu_minutes"] == {"batch_size": 197, "sample_size": 86}
    assert d["platform"] == {"torch": "2.x"} and set(d["defects"]) >= {"one-run-no-interval"}
    assert set(figures(r)) == {f"epfl-volume-{s}" for s in
                               ("depth", "width", "batch_size", "sample_size")}
    note = note_markdown(r)
    assert note.splitlines()[0] == r.verdict and "| depth | 3 | float64 | 0/50 |" in note
    csv_path, html_path = write_report(r, tmp_path)
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 40 and rows[0]["their_source"].endswith("number_of_layers_MNIST.csv")
    assert "float64-never-measured" in html_path.read_text()
    assert any(line.startswith("defect one-run-no-interval") for line in format_text(r))


@pytest.mark.skipif(not DATA or not (Path(DATA) / "MNIST").exists(),
                    reason="needs the MNIST files (HPO_DATA_DIR)")
def test_the_command_runs_a_study_and_a_rerun_resumes_it(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HPO_STORAGE", None)
    # Smoke-sized: the 7 quick cells at float32, 1 init, the first 256 images per pass.
    args = [sys.executable, "-m", "hpo", "reproduce", "epfl-volume", "--quick", "--inits", "1",
            "--precisions", "float32", "--images", "256", "--storage",
            f"sqlite:///{tmp_path}/s.db", "--out", str(tmp_path / "out"), "--json"]
    first = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads(first.stdout)
    assert report["study"] == "epfl-volume-quick-k1-images256-float32"
    assert report["verdict"].startswith("epfl-volume QUICK (not their protocol")
    assert report["complete"] and report["trials_total"] == 7 and len(report["cells"]) == 7
    assert report["platform"]["torch"] and all(Path(f).is_file() for f in report["files"])
    study = optuna.load_study(study_name=report["study"], storage=f"sqlite:///{tmp_path}/s.db")
    sampled = [t for t in study.get_trials() if t.params["cell"] == "L3-n32-b64-s10000"]
    assert [t.user_attrs["train_samples"] for t in sampled] == [10000]
    assert sampled[0].user_attrs["accumulate"] is True
    again = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout)["cells"] == report["cells"]
    assert len(study.get_trials()) == 7  # resumed: nothing new
