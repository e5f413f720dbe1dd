"""The epfl-fc report: their numbers, per-cell intervals, paired differences, verdicts."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from scipy import stats as sps

from hpo.analysis.reproduce.epfl_fc import (
    build_report,
    figures,
    format_text,
    note_markdown,
    paper_rows,
    t_interval,
    write_report,
)
from hpo.config.reproduce.epfl_fc import epfl_fc_config, plan


def test_their_numbers_are_the_issues_and_name_their_file() -> None:
    rows = paper_rows()
    assert len(rows) == 20
    ten = {"float32": [97.71, 97.54, 97.64, 97.60, 97.67],
           "bfloat16": [97.56, 95.78, 96.17, 96.48, 96.64]}
    for precision, accs in ten.items():
        for alpha, acc in zip((0, 1, 2, 4, 8), accs):
            r = rows[("10ep", precision, float(alpha))]
            assert float(r["accuracy"]) == acc and r["kind"] == "published"
            assert r["source"] == "notebooks/fully_connected_experiment.ipynb"
            assert r["commit"].startswith("0b14c6e")
    fifty = [rows[("50ep", p, a)] for p in ("float32", "bfloat16")
             for a in (0.0, -0.5, 0.5, 0.8, 1.0)]
    assert {r["kind"] for r in fifty} == {"derived"}
    assert float(rows[("50ep", "bfloat16", 1.0)]["accuracy"]) == 88.59
    assert float(rows[("50ep", "bfloat16", 0.0)]["accuracy"]) == 97.72
    assert rows[("50ep", "float32", 0.0)]["source"] == "notebooks/out/output1_32.bin"
    assert not any(p == "float16" for _, p, _ in rows)  # they never ran float16


def test_the_t_interval_matches_scipy() -> None:
    x = [97.1, 97.4, 97.3, 96.9, 97.6]
    low, high = t_interval(x)
    ref = sps.t.interval(0.95, 4, loc=np.mean(x), scale=sps.sem(x))
    assert (low, high) == pytest.approx(ref)
    assert t_interval([97.0]) == (None, None)


def _study(p, acc, hits: int = 3) -> optuna.Study:
    """Complete trials of every (cell, precision, seed) with test accuracy ``acc(...)``."""
    cfg = epfl_fc_config(p, "sqlite:///unused.db")
    study = optuna.create_study(study_name=cfg.name, direction="maximize")
    for cell in p.cells():
        for precision in p.precisions:
            for seed in range(p.seeds):
                a, sha = acc(cell, precision, seed)
                study.add_trial(optuna.trial.create_trial(
                    params={"cell": cell, "precision": precision, "seed": seed},
                    distributions=dict(cfg.search_space), value=a,
                    user_attrs={"test_accuracy": a, "kink_hits": hits, "result": {
                        "params_sha256": sha, "wall_time_s": 1.0,
                        "platform": {"torch": "x", "cpu_model": "y"}}}))
    return study


def test_alpha_moves_bfloat16_beyond_seed_noise_and_set_differs_from_multiply() -> None:
    p = plan(quick=True, precisions=("float32", "bfloat16"))
    seed_noise = [0.0, 0.002, -0.001, 0.001, -0.002]

    def acc(cell: str, precision: str, seed: int) -> tuple[float, str]:
        grid, rest = cell.split("-a")
        alpha, kink = rest.rsplit("-", 1)
        base = 0.97 + seed_noise[seed]
        if precision == "float32" or float(alpha) == 0:  # alpha changes nothing
            return base, f"{grid}{precision}{seed}"
        drop = 0.05 if kink == "set" else 0.01
        return base - drop + 0.0001 * seed, f"{cell}{precision}{seed}"

    r = build_report(_study(p, acc), p)
    assert r.complete and r.trials_complete == 12 * 2 * 5
    by = {(c.grid, c.precision, c.kink_grad, c.alpha): c for c in r.cells}
    zero = by[("10ep", "float32", "set", 0.0)]
    assert zero.mean == pytest.approx(97.0) and zero.theirs == 97.71
    assert zero.diff_mean is None and zero.moved is None
    flat = by[("10ep", "float32", "set", 8.0)]
    assert flat.diff_mean == 0 and flat.identical_pairs == 5 and flat.moved is False
    assert "not-subgradient" in flat.defects and "set" in flat.defects
    hit = by[("50ep", "bfloat16", "set", 1.0)]
    assert hit.diff_mean == pytest.approx(-5.0 + 0.02, abs=1e-9) and hit.moved
    assert hit.theirs == 88.59 and hit.theirs_kind == "derived" and "16-bit" in hit.defects
    assert hit.diff_ci_low < hit.diff_mean < hit.diff_ci_high < 0
    spread = next(s for s in r.spreads if (s.grid, s.precision) == ("10ep", "float32"))
    # mean |difference| over the 10 seed pairs of 0, .2, -.1, .1, -.2 pp
    assert spread.seed_change == pytest.approx(0.2) and spread.seeds == 5
    assert r.verdicts["float32"].startswith("float32: alpha did not move")
    assert "set and multiply do not differ" in r.verdicts["float32"]
    assert r.verdicts["bfloat16"].startswith(
        "bfloat16: alpha moved test accuracy by more than a change of seed in 8/8 cells")
    assert "set and multiply differ in 4/4 alphas" in r.verdicts["bfloat16"]
    control = [k for k in r.contrasts if k.alpha == 0]
    assert control and all(k.identical_pairs == k.pairs == 5 for k in control)
    assert r.platform == {"torch": "x", "cpu_model": "y"} and r.platform_source == "trials"


def test_missing_runs_leave_the_verdict_unjudged_and_reports_are_written(tmp_path) -> None:
    p = plan(quick=True, precisions=("float16",), seeds=2)
    r = build_report(_study(p, lambda c, pr, s: (0.9, "same")), p, platform={"torch": "z"})
    assert all(c.theirs is None for c in r.cells)  # they have no float16 number
    assert "No kink hit" not in r.verdicts["float16"]
    quiet = build_report(_study(p, lambda c, pr, s: (0.9 + s / 100, "same"), hits=0), p)
    assert "No kink hit: these float16 runs never put" in quiet.verdicts["float16"]
    text = "\n".join(format_text(r))
    assert "QUICK" in text and "defect 16-bit" in text and "platform (trials)" in text
    payload = json.loads(json.dumps(r.to_dict()))
    assert payload["quick"] and payload["verdicts"]["float16"] == r.verdicts["float16"]
    assert set(figures(r)) == {"epfl-fc-accuracy", "epfl-fc-paired"}
    assert note_markdown(r).splitlines()[0] == r.verdicts["float16"]
    csv_path, html_path = write_report(r, tmp_path)
    assert csv_path.read_text().startswith("grid,epochs,precision,kink_grad,alpha")
    assert "set minus multiply" in html_path.read_text()
    empty = build_report(optuna.create_study(study_name=p.name), p)
    assert empty.verdicts["float16"] == (
        "float16: not enough seeds yet (need 2 per cell, paired with alpha = 0)")
    assert empty.platform is None and not empty.complete
