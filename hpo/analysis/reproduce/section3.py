"""The report of ``hpo reproduce section3``: our bifurcation fractions beside the paper's.

Each cell's bifurcated inits out of probed inits, per precision, beside the paper's count out
of 1000 (``hpo/analysis/paper/section3.csv``, from deel-ai/relu-prime), with 95%
Clopper-Pearson intervals (defined at k = 0 and k = n).
See docs/design.md#section-3-report-sources-and-intervals.
"""

from __future__ import annotations

import csv
import html
import io
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.subplots import make_subplots
from scipy.stats import binomtest

from hpo.analysis.report import html_page, html_table
from hpo.config.reproduce.section3 import Section3Plan, slice_size
from hpo.engine.numerics.platform import platform_summary

__all__ = [
    "Cell",
    "Section3Report",
    "binomial_ci",
    "build_report",
    "figures",
    "format_text",
    "note_markdown",
    "paper_counts",
    "write_report",
]

logger = logging.getLogger(__name__)

_INTERVAL_METHOD = "clopper-pearson"
_PAPER_SOURCE = (
    "Bertoin et al., NeurIPS 2021, Section 3; github.com/deel-ai/relu-prime, "
    "paper_results/section_3/*.csv (counts out of 1000 initialisations)"
)
_SWEEP_LABEL = {"depth": "depth L (hidden layers)", "width": "width n (units per layer)",
                "batch_size": "batch size (images)"}


@dataclass(frozen=True)
class Cell:
    """One reported point: a sweep value at one precision."""

    sweep: str
    value: int
    precision: str
    cell: str  # the study's cell name (L3-n256-b256 is in all three sweeps)
    inits: int  # inits probed so far (the plan's K once the study is done)
    bifurcated: int
    fraction: float | None  # None while no init of the cell has been probed
    ci_low: float | None
    ci_high: float | None
    paper_fraction: float | None  # None where the paper has no figure
    paper_bifurcated: int | None
    paper_inits: int | None


@dataclass(frozen=True)
class Section3Report:
    """What ``hpo reproduce section3`` prints, writes and returns as JSON."""

    study: str
    plan: Section3Plan
    cells: list[Cell]
    trials_complete: int  # distinct (cell, precision, slice) trials complete
    trials_total: int
    platform: dict[str, Any] | None
    platform_source: str  # "trials" (recorded by the workers) or "report" (this process)
    train_samples: int | None

    @property
    def complete(self) -> bool:
        return self.trials_complete == self.trials_total

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "complete": self.complete,
            "trials_complete": self.trials_complete,
            "trials_total": self.trials_total,
            "inits": self.plan.inits,
            "quick": self.plan.quick,
            "precisions": list(self.plan.precisions),
            "train_samples": self.train_samples,
            "protocol": (
                "fc nets on MNIST, ToTensor inputs (no normalisation), one epoch without "
                "updates, first-layer gradients compared bitwise between ReLU'(0) = 0 and 1"
            ),
            "interval": f"95% {_INTERVAL_METHOD} (scipy.stats.binomtest.proportion_ci)",
            "paper_source": _PAPER_SOURCE,
            "platform": self.platform,
            "platform_source": self.platform_source,
            "cells": [asdict(c) for c in self.cells],
        }

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(c) for c in self.cells])


def paper_counts() -> dict[tuple[str, int, str], tuple[int, int]]:
    """``(sweep, value, precision) -> (bifurcated, inits)`` from the shipped paper data."""
    text = resources.files("hpo.analysis").joinpath("paper", "section3.csv").read_text("utf-8")
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    return {
        (r["sweep"], int(r["value"]), r["precision"]): (int(r["bifurcated"]), int(r["inits"]))
        for r in rows
    }


def binomial_ci(k: int, n: int) -> tuple[float, float]:
    """95% Clopper-Pearson interval of a proportion ``k / n``."""
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def build_report(
    study: optuna.Study, p: Section3Plan, *, platform: Mapping[str, Any] | None = None
) -> Section3Report:
    """Sum the study's complete trials per (cell, precision) and set them beside the paper.

    Args:
        study: a study created from :func:`hpo.config.reproduce.section3.section3_config` for ``p``.
        p: its plan.
        platform: the record to report when no trial carries a ``platform`` attribute
            (:func:`hpo.engine.numerics.platform.platform_record` of the reporting process).
    """
    done: dict[tuple[str, str], list[int]] = {}
    recorded = None
    samples = None
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # One result per slice: a slice run twice (a re-queued copy that also finished, or a
    # second creator) holds the same inits, which must not count twice.
    slices = {}
    for t in sorted(complete, key=lambda t: t.number):
        slices.setdefault((t.params["cell"], t.params["precision"], t.params["seed"]), t)
    for t in slices.values():
        got = done.setdefault((t.params["cell"], t.params["precision"]), [0, 0])
        got[0] += int(t.user_attrs["bifurcated"])
        got[1] += int(t.user_attrs["inits"])
        samples = t.user_attrs.get("train_samples", samples)
        recorded = recorded or t.user_attrs.get("platform")
    paper = paper_counts()
    cells = []
    for sweep, value, name in p.points():
        for precision in p.precisions:
            k, n = done.get((name, precision), (0, 0))
            low, high = binomial_ci(k, n) if n else (None, None)
            theirs = paper.get((sweep, value, precision))
            cells.append(Cell(
                sweep=sweep, value=value, precision=precision, cell=name, inits=n,
                bifurcated=k, fraction=k / n if n else None, ci_low=low, ci_high=high,
                paper_fraction=None if theirs is None else theirs[0] / theirs[1],
                paper_bifurcated=None if theirs is None else theirs[0],
                paper_inits=None if theirs is None else theirs[1],
            ))
    total = len(p.cells()) * len(p.precisions) * (p.inits // slice_size(p.inits))
    return Section3Report(
        study=study.study_name, plan=p, cells=cells, trials_complete=len(slices),
        trials_total=total, platform=dict(recorded or platform or {}) or None,
        platform_source="trials" if recorded else "report", train_samples=samples,
    )


# ----------------------------------------------------------------------------------
def _fmt(x: float | None) -> str:
    return "  n/a" if x is None else f"{x:5.3f}"


def format_text(r: Section3Report) -> list[str]:
    """A readable table: one line per (sweep value, precision)."""
    lines = [
        f"Section 3 reproduction, study {r.study}: {r.trials_complete}/{r.trials_total} trials"
        f" complete, {r.plan.inits} inits per cell, {r.train_samples} training images",
        f"{'sweep':<11}{'value':>6}  {'precision':<9}{'ours':>6}  {'95% CI':<13}"
        f"{'paper':>6}   bifurcated/inits",
    ]
    for c in r.cells:
        ci = "n/a" if c.ci_low is None else f"[{c.ci_low:.3f},{c.ci_high:.3f}]"
        paper = (
            "" if c.paper_bifurcated is None else f"  paper {c.paper_bifurcated}/{c.paper_inits}"
        )
        lines.append(
            f"{c.sweep:<11}{c.value:>6}  {c.precision:<9}{_fmt(c.fraction):>6}  {ci:<13}"
            f"{_fmt(c.paper_fraction):>6}   {c.bifurcated}/{c.inits}{paper}"
        )
    if r.platform:
        lines.append(f"platform ({r.platform_source}): {platform_summary(r.platform)}")
    return lines


def _figure(r: Section3Report, sweep: str) -> go.Figure:
    precisions = list(r.plan.precisions)
    fig = make_subplots(rows=1, cols=len(precisions), subplot_titles=precisions,
                        shared_yaxes=True)
    for col, precision in enumerate(precisions, start=1):
        cells = [c for c in r.cells if c.sweep == sweep and c.precision == precision]
        ours = [c for c in cells if c.fraction is not None]
        fig.add_trace(go.Scatter(
            x=[c.value for c in ours], y=[c.fraction for c in ours], mode="lines+markers",
            name="ours", legendgroup="ours", showlegend=col == 1, line={"color": "#1f77b4"},
            error_y={"type": "data", "symmetric": False,
                     "array": [c.ci_high - c.fraction for c in ours],
                     "arrayminus": [c.fraction - c.ci_low for c in ours]},
        ), row=1, col=col)
        theirs = [c for c in cells if c.paper_fraction is not None]
        fig.add_trace(go.Scatter(
            x=[c.value for c in theirs], y=[c.paper_fraction for c in theirs],
            mode="lines+markers", name="paper (1000 inits)", legendgroup="paper",
            showlegend=col == 1, line={"color": "#d62728", "dash": "dash"},
            marker={"symbol": "square-open"},
        ), row=1, col=col)
        fig.update_xaxes(title_text=_SWEEP_LABEL[sweep], type="log" if sweep != "depth" else
                         "linear", row=1, col=col)
    fig.update_yaxes(title_text="fraction of inits bifurcated", range=[-0.05, 1.05],
                     row=1, col=1)
    fig.update_layout(title=f"{sweep} sweep: ours (95% {_INTERVAL_METHOD}) vs the paper",
                      height=380)
    return fig


def figures(r: Section3Report) -> dict[str, go.Figure]:
    """The dashboard's charts: one per sweep, ours beside the paper's, under stable ids."""
    return {f"section3-{sweep}": _figure(r, sweep) for sweep in r.plan.sweeps}


def note_markdown(r: Section3Report) -> str:
    """The study note: first line the verdict (how many cells agree with the paper)."""
    known = [c for c in r.cells if c.paper_fraction is not None and c.ci_low is not None]
    inside = [c for c in known if c.ci_low <= c.paper_fraction <= c.ci_high]
    lines = [f"**Section 3: the paper's fraction lies inside our 95% interval in {len(inside)}"
             f" of {len(known)} cells ({r.trials_complete}/{r.trials_total} trials complete)."
             "**", "", f"## hpo reproduce section3: {r.study}", "", "```", *format_text(r),
             "```", "", f"Paper: {_PAPER_SOURCE}."]
    return "\n".join(lines) + "\n"


def write_report(r: Section3Report, out_dir: str | Path = "results") -> list[Path]:
    """``section3_<study>.csv`` and ``section3_<study>.html`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"section3_{r.study}.csv"
    r.table().to_csv(csv_path, index=False, float_format="%.6g")
    html_path = out / f"section3_{r.study}.html"
    title = f"Section 3 reproduction: {r.study}"
    sweeps = list(dict.fromkeys(c.sweep for c in r.cells))
    parts = [
        f"<p>{r.trials_complete}/{r.trials_total} trials complete; {r.plan.inits} inits per "
        f"cell, {r.train_samples} training images. Paper: {html.escape(_PAPER_SOURCE)}. "
        f"Intervals: 95% {_INTERVAL_METHOD}.</p>",
        f"<p>Platform ({html.escape(r.platform_source)}): "
        f"{html.escape(platform_summary(r.platform))}</p>",
    ]
    for i, sweep in enumerate(sweeps):
        parts.append(_figure(r, sweep).to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts += ["<h2>Cells</h2>", html_table(r.table())]
    html_path.write_text(html_page(title, parts), encoding="utf-8")
    for path in (csv_path, html_path):
        logger.info("wrote %s", path)
    return [csv_path, html_path]
