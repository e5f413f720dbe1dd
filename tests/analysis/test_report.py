"""The comparison's files: CSV rows per group and an offline, readable HTML report."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from hpo.analysis.compare import compare_study
from hpo.analysis.report import figures, format_text, write_report
from tests.analysis._studies import StudyBuilder

RESAMPLES = 500


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    tuned = StudyBuilder(tmp, "tuned")
    fixed = StudyBuilder(tmp, "fixed", search_derivative=False)
    rng = np.random.default_rng(0)
    for precision in ("float32", "bfloat16"):
        for seed in range(6):
            # float32 gains exactly 1 pp in every pair, bfloat16 1.0-1.4 pp
            gain = 0.0 if precision == "float32" else 0.002 * (seed % 3)
            t = tuned.add(precision=precision, rpz=0.25 + 0.1 * seed, seed=seed,
                          acc=0.9717 + 0.001 * seed + gain, kink_hits=1000 * (seed + 1))
            tuned.add(precision=precision, rpz=0.0, seed=seed, acc=0.9617 + 0.001 * seed,
                      baseline=True, twin_of=t)
            fixed.add(precision=precision, seed=seed, acc=float(0.96 + rng.normal(0, 0.01)))
    return compare_study(tuned.study, tuned.cfg, against=(fixed.study, fixed.cfg),
                         n_resamples=RESAMPLES)


def test_csv_has_one_row_per_group(comparison, tmp_path):
    paths = write_report(comparison, tmp_path)
    assert [p.name for p in paths] == [
        "compare_tuned.csv", "compare_tuned_vs_fixed.csv", "compare_tuned.html"
    ]
    table = pd.read_csv(tmp_path / "compare_tuned.csv")
    assert sorted(table["precision"]) == ["bfloat16", "float32"]
    row = table[table["precision"] == "float32"].iloc[0]
    assert row["n_pairs"] == 6 and row["n_units"] == 6
    assert row["n_identical_pairs"] == 0  # no params_sha256 recorded in these trials
    assert row["kink_hits_per_trial"] == pytest.approx(3750)  # tuned 1000..6000, twins 4000
    assert row["mean_diff_pp"] == pytest.approx(1.0)
    assert row["baseline_mean_pct"] == pytest.approx(96.42)
    assert row["best_tuned_pct"] == pytest.approx(97.67)
    assert row["test"] == "sign test"  # six identical differences: ties
    assert row["verdict"].startswith("tuning ReLU'(0) improved accuracy by +1.00 pp")
    against = pd.read_csv(tmp_path / "compare_tuned_vs_fixed.csv")
    assert list(against["group"]) == [
        "fc/mnist/bfloat16/relu", "fc/mnist/float32/relu", "all"
    ]


def test_html_is_offline_and_holds_every_group_and_plot(comparison, tmp_path):
    write_report(comparison, tmp_path)
    text = (tmp_path / "compare_tuned.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", text)  # no CDN: plotly.js is inline
    assert text.count("* plotly.js v") == 1  # embedded once, not once per plot
    for label in ("fc/mnist/float32/relu", "fc/mnist/bfloat16/relu"):
        assert label in text
    # the plots' data and their labels
    assert "97.67" in text  # best tuned accuracy (%) as a scatter point
    assert "ReLU'(0): derivative used at 0 (dimensionless)" in text
    assert "accuracy difference (percentage points)" in text
    assert "kink hits per training sample per epoch" in text
    assert "Accuracy across search trials: tuned vs fixed" in text
    assert "Parameter importances for the paired difference tuned - default" in text
    # the pair counts and kink hits per trial, in the table and next to each verdict
    assert "<th>n_identical_pairs</th>" in text and "<th>kink_hits_per_trial</th>" in text
    assert "6 pairs, 0 bitwise identical (same params_sha256); 3750 kink hits per trial" in text
    assert text.count('class="plotly-graph-div"') == len(figures(comparison))


def test_figures_have_titles_axis_labels_and_named_traces(comparison):
    figs = figures(comparison)
    assert len(figs) == 5  # accuracy vs ReLU'(0), paired, importances, kinks, against
    for fig in figs:
        layout = fig.layout
        assert layout.title.text
        assert layout.xaxis.title.text and layout.yaxis.title.text
        assert all(trace.name for trace in fig.data)


def test_text_summary_has_verdicts(comparison):
    lines = format_text(comparison)
    assert lines[0].startswith("study tuned: test accuracy (%)")
    verdicts = [line for line in lines if "verdict:" in line]
    assert len(verdicts) == 2
    assert any(line.startswith("  tuned vs fixed [all]:") for line in lines)


def test_a_study_where_nothing_changed_says_so_in_the_html(tmp_path):
    b = StudyBuilder(tmp_path, "nothing")
    for seed in range(3):
        t = b.add(rpz=0.2 * (seed + 1), seed=seed, acc=0.95 + 0.01 * seed, sha=f"{seed}" * 64,
                  kink_hits=0)
        b.add(rpz=0.0, seed=seed, acc=0.95 + 0.01 * seed, baseline=True, twin_of=t,
              sha=f"{seed}" * 64, kink_hits=0)
    c = compare_study(b.study, b.cfg, n_resamples=RESAMPLES)
    text = write_report(c, tmp_path)[-1].read_text(encoding="utf-8")
    assert "<b>ReLU&#x27;(0) changed nothing here: 3/3 pairs bitwise identical</b>" in text
    assert "3 pairs, 3 bitwise identical (same params_sha256); 0 kink hits per trial" in text
    assert "(Optuna, one point per pair)" not in text  # no importance plot
    assert "all 3 pairs are bitwise identical" in text


def test_dashboard_figures_are_the_paired_difference_and_the_kink_hits_under_stable_ids(
    comparison,
):
    from hpo.analysis.report import GRAPH_IDS, dashboard_figures

    c = comparison
    figs = dashboard_figures(c)
    assert tuple(figs) == GRAPH_IDS
    paired, hits = figs.values()
    mean = paired.data[0]
    assert list(mean.y) == [g.paired.mean_diff for g in c.groups]
    assert list(mean.error_y.array) == pytest.approx(
        [g.paired.ci_high - g.paired.mean_diff for g in c.groups])
    assert c.groups[0].paired.verdict.split(" (")[0] in paired.layout.title.text
    recorded = sorted((r.number, r.kink_hits) for r in c.records if r.complete)
    drawn = sorted(p for t in hits.data for p in zip(t.x, t.y, strict=True))
    assert drawn == recorded
