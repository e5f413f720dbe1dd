"""Write a :class:`~hpo.analysis.compare.StudyComparison` out: text lines, CSV and one
self-contained HTML report (plotly.js embedded once, so it opens offline).

:func:`write_report` writes the files, :func:`format_text` the terminal lines,
:func:`dashboard_figures` the charts drawn on the study page (stable ids);
:func:`html_page` and :func:`html_table` also frame the Section 3 report.
"""

from __future__ import annotations

import html
import logging
import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from hpo.analysis.compare import GroupSummary, StudyComparison
from hpo.analysis.trials import group_label

__all__ = [
    "GRAPH_IDS",
    "closing_lines",
    "dashboard_figures",
    "figures",
    "format_text",
    "html_page",
    "html_table",
    "pairs_line",
    "write_report",
]

logger = logging.getLogger(__name__)

_DERIVATIVE_LABEL = {
    "relu_prime_zero": "ReLU'(0): derivative used at 0 (dimensionless)",
    "relu6_prime_six": "ReLU6'(6): derivative used at 6 (dimensionless)",
}
_CSV_FLOAT = "%.6g"  # accuracies in % to 1e-4 pp; drops float noise such as 96.19999999
_IMPORTANCE_LABEL = "parameter importances for the paired difference (tuned - default)"
# The charts hpo compare draws on the study page: re-running replaces them by these ids.
GRAPH_IDS = ("hpo-compare-paired-difference", "hpo-compare-kink-hits")
_METRIC_LABEL = {"test_accuracy": "test accuracy (%)", "val_accuracy": "validation accuracy (%)"}


def _fmt(x: float, spec: str = ".2f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_text(c: StudyComparison) -> list[str]:
    """The lines ``hpo compare`` prints: one block per group, then the other study."""
    lines = [f"study {c.study}: {_METRIC_LABEL[c.metric]}, bootstrap seed {c.seed}"]
    if c.headline:
        lines.append(f"  {c.headline}")
    if c.no_kink:
        lines.append(f"  {c.no_kink}")
    for g in c.groups:
        lines.append(
            f"  {group_label(g.group)}: {g.n_complete} complete, {g.n_pruned} pruned, "
            f"{g.n_diverged} diverged, {g.n_failed} failed"
        )
        best = (
            f"best tuned {_fmt(g.best_tuned_accuracy)} % (trial {g.best_tuned_trial}, "
            f"ReLU'(0)={_fmt(g.best_relu_prime_zero, '.3g')})"
            if g.best_tuned_trial is not None
            else "no completed tuned trial"
        )
        lines.append(
            f"    baseline {_fmt(g.baseline_mean)} ± {_fmt(g.baseline_std)} % "
            f"(n={g.n_baseline}); {best}"
        )
        lines.append(f"    {pairs_line(g)}")
        lines.append(f"    verdict: {g.paired.verdict}")
    lines += [f"  {label}: {text}" for label, text in closing_lines(c)]
    for row in c.against:
        lines.append(f"  {c.study} vs {c.other} [{row.group}]: {row.result.verdict}")
    return lines


def closing_lines(c: StudyComparison) -> list[tuple[str, str]]:
    """What follows the groups, as ``(label, text)``: the importances (or why there are
    none), then the platform warnings and the platform note."""
    out = []
    if c.importances:
        text = ", ".join(f"{k} {v:.2f}" for k, v in c.importances.items())
        out.append((_IMPORTANCE_LABEL, text + (f" ({c.importance_note})"
                                               if c.importance_note else "")))
    elif c.importance_note:
        out.append((_IMPORTANCE_LABEL, c.importance_note))
    out += [("warning", w) for w in c.platform_warnings]
    if c.platform_note:
        out.append(("platform", c.platform_note))
    return out


def pairs_line(g: GroupSummary) -> str:
    """``8 pairs, 8 bitwise identical; 0 kink hits per trial``."""
    return (f"{g.n_pairs} pairs, {g.n_identical_pairs} bitwise identical (same params_sha256); "
            f"{_fmt(g.kink_hits_per_trial, '.4g')} kink hits per trial")


def _write_csv(c: StudyComparison, out_dir: str | Path) -> list[Path]:
    """``compare_<study>.csv`` (one row per group) and, with another study,
    ``compare_<study>_vs_<other>.csv``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"compare_{c.study}.csv"
    c.table().to_csv(path, index=False, float_format=_CSV_FLOAT)
    paths = [path]
    if c.against:
        path = out / f"compare_{c.study}_vs_{c.other}.csv"
        c.against_table().to_csv(path, index=False, float_format=_CSV_FLOAT)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------
def _accuracy_vs_derivative(c: StudyComparison, name: str) -> go.Figure:
    fig = go.Figure()
    for key in sorted({r.group for r in c.records}):
        for default in (True, False):
            recs = [r for r in c.records if r.complete and r.group == key
                    and (not r.tuned) == default]
            if not recs:
                continue
            fig.add_trace(go.Scatter(
                x=[getattr(r, name) for r in recs], y=[r.accuracy for r in recs],
                mode="markers", name=f"{group_label(key)} ({'default' if default else 'tuned'})",
                marker={"symbol": "diamond" if default else "circle", "size": 9},
                text=[f"trial {r.number}" for r in recs],
            ))
    fig.update_layout(
        title=f"{_METRIC_LABEL[c.metric].split(' (')[0].capitalize()} vs "
        f"{_DERIVATIVE_LABEL[name].split(':')[0]} per precision",
        xaxis_title=_DERIVATIVE_LABEL[name], yaxis_title=_METRIC_LABEL[c.metric],
        legend_title="group (model/dataset/precision/activation)",
    )
    return fig


def _paired_differences(c: StudyComparison) -> go.Figure:
    fig = go.Figure()
    labels = [group_label(g.group) for g in c.groups]
    fig.add_trace(go.Scatter(
        x=labels, y=[g.paired.mean_diff for g in c.groups], mode="markers",
        name="mean difference with 95% bootstrap CI", marker={"size": 12},
        error_y={"type": "data", "symmetric": False,
                 "array": [g.paired.ci_high - g.paired.mean_diff for g in c.groups],
                 "arrayminus": [g.paired.mean_diff - g.paired.ci_low for g in c.groups]},
    ))
    pairs = c.pairs
    fig.add_trace(go.Scatter(
        x=[group_label(p.group) for p in pairs],
        y=[p.tuned_accuracy - p.default_accuracy for p in pairs], mode="markers",
        name="single pairs (tuned trial - its default run)", opacity=0.5,
        text=[f"trial {p.tuned} vs {p.default}" for p in pairs],
    ))
    fig.add_hline(y=0, line_dash="dash", line_color="gray")
    fig.update_layout(title="Paired difference: tuned minus default derivatives",
                      xaxis_title="group (model/dataset/precision/activation)",
                      yaxis_title="accuracy difference (percentage points)")
    return fig


def _kink_hits_per_trial(c: StudyComparison) -> go.Figure:
    fig = go.Figure()
    for key in sorted({r.group for r in c.records}):
        for default in (True, False):
            recs = [r for r in c.records if r.complete and r.group == key
                    and (not r.tuned) == default and r.kink_hits is not None]
            if recs:
                fig.add_trace(go.Scatter(
                    x=[r.number for r in recs], y=[r.kink_hits for r in recs], mode="markers",
                    name=f"{group_label(key)} ({'default' if default else 'tuned'})",
                    marker={"symbol": "diamond" if default else "circle", "size": 9},
                ))
    title = "Kink hits per trial (activation inputs exactly at a kink, whole run)"
    if c.no_kink or not fig.data:
        title += "<br><sub>" + ("no kink hit recorded" if not fig.data else "all 0: ReLU'(0) "
                                "was never read") + "</sub>"
    fig.update_layout(title=title, xaxis_title="trial number", yaxis_title="kink hits (count)",
                      legend_title="group (model/dataset/precision/activation)")
    return fig


def _plotly_text(text: str) -> str:
    """``text`` safe inside a plotly title (which reads a few HTML tags)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def dashboard_figures(c: StudyComparison) -> dict[str, go.Figure]:
    """The charts for the study page, by their stable id (:data:`GRAPH_IDS`): the paired
    difference with its 95% interval per group, and the kink hits of every trial. Both are
    always given (a figure saying why it is empty when it is), so that a re-run replaces
    exactly the charts the last one drew."""
    paired = _paired_differences(c)
    verdicts = "<br>".join(
        _plotly_text(f"{group_label(g.group)}: {g.paired.verdict.split(' (')[0]}")
        for g in c.groups)
    paired.update_layout(title="Paired difference, tuned minus default (95% bootstrap CI)"
                         f"<br><sub>{verdicts}</sub>", margin={"t": 60 + 20 * len(c.groups)})
    if not c.pairs:
        paired.add_annotation(text="no pairs: no tuned trial has a default-derivative partner",
                              showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    figs = (paired, _kink_hits_per_trial(c))
    for fig in figs:  # the page draws them 450 px high, half its width: legend below
        fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.3},
                          legend_title_text="")
    return dict(zip(GRAPH_IDS, figs, strict=True))


def _importances(c: StudyComparison) -> go.Figure:
    names = list(c.importances)[::-1]  # largest on top
    fig = go.Figure(go.Bar(x=[c.importances[n] for n in names], y=names, orientation="h",
                           name="importance"))
    fig.update_layout(title="Parameter importances for the paired difference tuned - default "
                      "(Optuna, one point per pair)",
                      xaxis_title="importance (fraction of explained variance, 0-1)",
                      yaxis_title="parameter", showlegend=False)
    return fig


def _kink_rates(c: StudyComparison) -> go.Figure:
    per_sample = any(r.kink_rate_per_sample for r in c.records)
    unit = "kink hits per training sample per epoch" if per_sample else "kink hits per trial"
    fig = go.Figure()
    for precision in sorted({r.group[2] for r in c.records}):
        rates = [r.kink_rate for r in c.records
                 if r.group[2] == precision and r.kink_rate is not None]
        if rates:
            fig.add_trace(go.Box(y=rates, name=precision, boxpoints="all"))
    fig.update_layout(title="Kink hits (activation inputs exactly at a kink) per precision",
                      xaxis_title="precision", yaxis_title=unit, legend_title="precision")
    return fig


def _against(c: StudyComparison) -> go.Figure:
    fig = go.Figure()
    for name, side in ((c.study, "a"), (c.other, "b")):
        xs, ys = [], []
        for row in c.against:
            values = getattr(row, side)
            xs += [row.group] * len(values)
            ys += [float(v) for v in values]
        fig.add_trace(go.Box(x=xs, y=ys, name=name, boxpoints="all"))
    fig.update_layout(title=f"Accuracy across search trials: {c.study} vs {c.other}",
                      xaxis_title="group (model/dataset/precision/activation), or all",
                      yaxis_title=_METRIC_LABEL[c.metric], boxmode="group",
                      legend_title="study")
    return fig


def figures(c: StudyComparison) -> list[go.Figure]:
    """The report's plots, in order (empty ones left out)."""
    figs = [_accuracy_vs_derivative(c, n) for n in c.searched_derivatives or ("relu_prime_zero",)]
    if c.pairs:
        figs.append(_paired_differences(c))
    if c.importances:
        figs.append(_importances(c))
    if any(r.kink_rate is not None for r in c.records):
        figs.append(_kink_rates(c))
    if c.against:
        figs.append(_against(c))
    return figs


def _write_html(c: StudyComparison, out_dir: str | Path) -> Path:
    """``compare_<study>.html``: tables, verdicts and plots in one offline file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"compare_{c.study}.html"
    title = f"ReLU'(0) comparison: {c.study}" + (f" vs {c.other}" if c.other else "")
    parts = [
        f"<p>Metric: {_METRIC_LABEL[c.metric]}; accuracies in %, differences in percentage "
        f"points (pp); 95% percentile bootstrap intervals (seed {c.seed}). Pairs: each tuned "
        "trial against the default-derivative run with the same seed and settings; tuned "
        "trials sharing one default run are averaged first.</p>",
        *([f"<p class='headline'><b>{html.escape(c.headline)}</b></p>"] if c.headline else []),
        *([f"<p class='no-kink'>{html.escape(c.no_kink)}</p>"] if c.no_kink else []),
        *[f"<p class='warning'>Warning: {html.escape(w)}</p>" for w in c.platform_warnings],
        *([f"<p>Platform: {html.escape(c.platform_note)}</p>"] if c.platform_note else []),
        "<h2>Verdicts</h2><ul>",
        *[f"<li><b>{html.escape(group_label(g.group))}</b>: {html.escape(g.paired.verdict)} "
          f"({html.escape(pairs_line(g))})</li>" for g in c.groups],
        "</ul><h2>Per group</h2>",
        html_table(c.table()),
    ]
    if c.against:
        parts += [f"<h2>{html.escape(c.study)} vs {html.escape(str(c.other))}</h2><ul>",
                  *[f"<li><b>{html.escape(r.group)}</b>: {html.escape(r.result.verdict)}</li>"
                    for r in c.against],
                  "</ul>", html_table(c.against_table())]
    if c.importance_note:
        parts.append(f"<p>{_IMPORTANCE_LABEL.capitalize()}: "
                     f"{html.escape(c.importance_note)}</p>")
    parts.append("<h2>Plots</h2>")
    for i, fig in enumerate(figures(c)):
        # plotly.js goes into the page once (no CDN: the report must open offline).
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    path.write_text(html_page(title, parts), encoding="utf-8")
    return path


def html_page(title: str, body: list[str]) -> str:
    """One offline HTML page: ``title`` as its title and heading, then ``body``'s parts."""
    head = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
        "collapse;font-size:90%}td,th{border:1px solid #ccc;padding:3px 6px}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
    )
    return "\n".join([head, *body, "</body></html>"])


def html_table(frame: pd.DataFrame) -> str:
    """A report table: no index, ``n/a`` for missing values, 4 significant digits."""
    return frame.to_html(index=False, na_rep="n/a", float_format=lambda x: f"{x:.4g}")


def write_report(c: StudyComparison, out_dir: str | Path = "results") -> list[Path]:
    """Write the CSV file(s) and the HTML report into ``out_dir``; return their paths."""
    paths = [*_write_csv(c, out_dir), _write_html(c, out_dir)]
    for p in paths:
        logger.info("wrote %s", p)
    return paths
