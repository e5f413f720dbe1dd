"""The report of ``hpo reproduce epfl-volume``: our counts beside the EPFL reproduction's.

Per (sweep value, precision): bifurcated inits out of probed inits with a 95% Clopper-Pearson
interval, beside their count out of 100 (``hpo/analysis/paper/epfl_volume.csv``, each row
naming its file) with the same interval computed for it, a Fisher exact test of the two, and
the defects of theirs that touch the row. Also :func:`reproduce_epfl_volume` (the runner),
:func:`figures` and :func:`note_markdown` (for the dashboard).
"""

from __future__ import annotations

import csv
import html
import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.subplots import make_subplots
from scipy.stats import fisher_exact

from hpo.analysis.publish import publish_reproduction
from hpo.analysis.report import html_page, html_table
from hpo.analysis.reproduce.section3 import binomial_ci
from hpo.config.reproduce.epfl_volume import (
    PRECISIONS,
    EpflVolumePlan,
    epfl_volume_config,
    plan,
)
from hpo.config.reproduce.section3 import slice_size
from hpo.engine.numerics.platform import platform_summary
from hpo.worker.local import StudyRun, run_study

__all__ = [
    "DEFECTS",
    "EpflVolumeReport",
    "EpflVolumeRun",
    "VolumeCell",
    "build_report",
    "figures",
    "format_text",
    "note_markdown",
    "paper_counts",
    "reproduce_epfl_volume",
    "write_report",
]

logger = logging.getLogger(__name__)

_SOURCE = ("Martorella et al., [Re] Numerical influence of ReLU'(0) on backpropagation, "
           "ReScience C 2023; github.com/CS-433/ml-project-2-ristrettolearning-2, "
           "notebooks/Volume estimation.ipynb -> notebooks/out/volume_estimation_by_*.csv")
# Their GPU wall times, from the notebook's markdown cells 12 and 14.
THEIR_MINUTES = {"batch_size": 197, "sample_size": 86}
PROTOCOL = (
    "their notebook's loop: fc ReLU nets on MNIST (ToTensor), two nets with ReLU'(0) = 0 and "
    "1 and the same weights, one pass in order without zero_grad, bifurcated when the first "
    "Linear's accumulated weight gradients differ in value ((a - b).abs().sum() != 0) after "
    "some mini-batch; float16 is .half() (model, inputs and loss); sample sizes drawn with "
    "replacement (one draw per cell, seeded by split_seed 0; theirs: unseeded numpy)"
)
# id -> (what is wrong, which rows it touches: sweeps or "*", precisions or "*").
DEFECTS: Mapping[str, tuple[str, str, str]] = {
    "float64-never-measured": (
        "their depth sweep's float64 loop breaks before any backward pass (`if precision == "
        "64: break`): its 0/100 counts were never measured; we measure float64",
        "depth", "float64"),
    "one-run-no-interval": (
        "every cell is one run of 100 unseeded inits: no seed, no spread, no interval (the "
        "intervals beside their counts are ours)", "*", "*"),
    "float16-not-bfloat16": (
        "their '16-bit' is IEEE float16 here but bfloat16 in every other experiment of "
        "theirs: these rows say nothing about their bfloat16 results", "*", "float16"),
    "kink-grad-set": (
        "their ReLU backward sets the gradient at 0 to alpha instead of multiplying the "
        "incoming gradient (reproduced with kink_grad: set)", "*", "*"),
    "plot-labels": (
        "the batch and sample plots say 'Layers = 4'; their code uses 3 hidden layers (the "
        "numbers are the code's)", "batch_size sample_size", "*"),
}


@dataclass(frozen=True)
class VolumeCell:
    """One reported point: a sweep value at one precision, ours beside theirs."""

    sweep: str
    value: int
    precision: str
    cell: str  # the study's cell (L3-n32-b256 is in the depth and the batch sweeps)
    inits: int  # inits probed so far
    bifurcated: int
    fraction: float | None
    ci_low: float | None
    ci_high: float | None
    their_bifurcated: int | None
    their_inits: int | None
    their_fraction: float | None
    their_ci_low: float | None  # our Clopper-Pearson interval for their count
    their_ci_high: float | None
    their_measured: bool | None  # False: their figure is a placeholder, not a measurement
    their_source: str | None  # the file of their repository the count comes from
    fisher_p: float | None  # two-sided Fisher exact test of ours against theirs
    wall_s: float  # our probe's wall time for this cell (sum over its trials)
    defects: str  # ids of DEFECTS touching this row, space separated


@dataclass(frozen=True)
class EpflVolumeReport:
    """What ``hpo reproduce epfl-volume`` prints, writes and returns as JSON."""

    study: str
    plan: EpflVolumePlan
    cells: list[VolumeCell]
    trials_complete: int
    trials_total: int
    platform: dict[str, Any] | None
    platform_source: str  # "trials" (recorded by the workers) or "report" (this process)

    @property
    def complete(self) -> bool:
        return self.trials_complete == self.trials_total

    @property
    def verdict(self) -> str:
        """One line: per precision, in how many cells our count and theirs agree."""
        parts = []
        for precision in self.plan.precisions:
            rows = [c for c in self.cells if c.precision == precision and c.inits]
            if not rows:
                continue
            ours = sum(c.bifurcated for c in rows) / sum(c.inits for c in rows)
            tested = [c for c in rows if c.fisher_p is not None]
            same = sum(c.fisher_p >= 0.05 for c in tested)
            text = f"{precision}: ours {ours:.0%} of inits bifurcated"
            if tested:
                theirs = (sum(c.their_bifurcated for c in tested)
                          / sum(c.their_inits for c in tested))
                text += f", theirs {theirs:.0%}; {same}/{len(tested)} cells agree"
            unmeasured = sum(c.their_measured is False for c in rows)
            if unmeasured:
                text += f" ({unmeasured} of theirs never measured)"
            parts.append(text)
        head = "epfl-volume" + (" QUICK (not their protocol: " + self._quick_text() + ")"
                                if self.plan.quick or self.plan.images else "")
        done = "" if self.complete else f" [{self.trials_complete}/{self.trials_total} trials]"
        return f"{head}{done}: " + ("; ".join(parts) or "nothing measured yet") + (
            " (agree: Fisher exact p >= 0.05)")

    def _quick_text(self) -> str:
        return (f"{self.plan.inits} inits, {len(self.plan.cells())} cells"
                + (f", first {self.plan.images} images per pass" if self.plan.images else ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study, "verdict": self.verdict, "complete": self.complete,
            "trials_complete": self.trials_complete, "trials_total": self.trials_total,
            "inits": self.plan.inits, "quick": self.plan.quick, "images": self.plan.images,
            "precisions": list(self.plan.precisions), "protocol": PROTOCOL,
            "interval": "95% clopper-pearson (scipy.stats.binomtest.proportion_ci)",
            "test": "two-sided Fisher exact (scipy.stats.fisher_exact), ours vs theirs",
            "their_source": _SOURCE, "their_gpu_minutes": dict(THEIR_MINUTES),
            "our_wall_s": {s: round(sum(c.wall_s for c in self._unique(s)), 1)
                           for s in self.plan.sweeps},
            "defects": {k: {"what": v[0], "sweeps": v[1], "precisions": v[2]}
                        for k, v in DEFECTS.items()},
            "platform": self.platform, "platform_source": self.platform_source,
            "cells": [asdict(c) for c in self.cells],
        }

    def _unique(self, sweep: str) -> list[VolumeCell]:
        return [c for c in self.cells if c.sweep == sweep]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(c) for c in self.cells])


def paper_counts() -> dict[tuple[str, int, str], dict[str, Any]]:
    """``(sweep, value, precision) -> {bifurcated, inits, measured, source}``."""
    text = resources.files("hpo.analysis").joinpath("paper", "epfl_volume.csv").read_text(
        "utf-8")
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    return {
        (r["sweep"], int(r["value"]), r["precision"]): {
            "bifurcated": int(r["bifurcated"]), "inits": int(r["inits"]),
            "measured": r["measured"] == "true", "source": r["source"],
        }
        for r in rows
    }


def _defects(sweep: str, precision: str) -> str:
    return " ".join(k for k, (_, sweeps, precs) in DEFECTS.items()
                    if (sweeps == "*" or sweep in sweeps.split())
                    and (precs == "*" or precision in precs.split()))


def _tally(study: optuna.Study) -> tuple[dict[tuple[str, str], list[float]], int, Any]:
    """Per (cell, precision): [bifurcated, inits, wall seconds]; slices counted once."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    slices: dict[tuple[Any, ...], Any] = {}
    for t in sorted(complete, key=lambda t: t.number):
        slices.setdefault((t.params["cell"], t.params["precision"], t.params["seed"]), t)
    done: dict[tuple[str, str], list[float]] = {}
    recorded = None
    for t in slices.values():
        got = done.setdefault((t.params["cell"], t.params["precision"]), [0, 0, 0.0])
        got[0] += int(t.user_attrs["bifurcated"])
        got[1] += int(t.user_attrs["inits"])
        got[2] += float(t.user_attrs.get("wall_time_s", 0.0))
        recorded = recorded or t.user_attrs.get("platform")
    return done, len(slices), recorded


def build_report(
    study: optuna.Study, p: EpflVolumePlan, *, platform: Mapping[str, Any] | None = None
) -> EpflVolumeReport:
    """Sum the study's complete trials per (cell, precision) and set them beside theirs."""
    done, n_slices, recorded = _tally(study)
    paper = paper_counts()
    cells = []
    for sweep, value, name in p.points():
        for precision in p.precisions:
            k, n, wall = done.get((name, precision), (0, 0, 0.0))
            k, n = int(k), int(n)
            theirs = paper.get((sweep, value, precision))
            tk = None if theirs is None else theirs["bifurcated"]
            tn = None if theirs is None else theirs["inits"]
            low, high = binomial_ci(k, n) if n else (None, None)
            tlow, thigh = binomial_ci(tk, tn) if theirs else (None, None)
            fisher = None
            if n and theirs and theirs["measured"]:
                fisher = float(fisher_exact([[k, n - k], [tk, tn - tk]]).pvalue)
            cells.append(VolumeCell(
                sweep=sweep, value=value, precision=precision, cell=name, inits=n,
                bifurcated=k, fraction=k / n if n else None, ci_low=low, ci_high=high,
                their_bifurcated=tk, their_inits=tn,
                their_fraction=None if theirs is None else tk / tn,
                their_ci_low=tlow, their_ci_high=thigh,
                their_measured=None if theirs is None else theirs["measured"],
                their_source=None if theirs is None else theirs["source"], fisher_p=fisher,
                wall_s=round(float(wall), 3), defects=_defects(sweep, precision),
            ))
    total = len(p.cells()) * len(p.precisions) * (p.inits // slice_size(p.inits))
    return EpflVolumeReport(
        study=study.study_name, plan=p, cells=cells, trials_complete=n_slices,
        trials_total=total, platform=dict(recorded or platform or {}) or None,
        platform_source="trials" if recorded else "report",
    )


# ----------------------------------------------------------------------------------
def _ci(low: float | None, high: float | None) -> str:
    return "n/a" if low is None else f"[{low:.2f},{high:.2f}]"


def format_text(r: EpflVolumeReport) -> list[str]:
    """The verdict, one line per (sweep value, precision), the defects and the platform."""
    lines = [r.verdict, f"study {r.study}: {r.trials_complete}/{r.trials_total} trials, "
             f"{r.plan.inits} inits per cell; protocol: {PROTOCOL}",
             f"{'sweep':<12}{'value':>6}  {'precision':<9}{'ours':>8}  {'95% CI':<12}"
             f"{'theirs':>8}  {'95% CI':<12}{'Fisher p':>9}  defects"]
    for c in r.cells:
        theirs = "n/a" if c.their_bifurcated is None else (
            f"{c.their_bifurcated}/{c.their_inits}" + ("" if c.their_measured else "*"))
        fisher = "n/a" if c.fisher_p is None else f"{c.fisher_p:.3f}"
        lines.append(
            f"{c.sweep:<12}{c.value:>6}  {c.precision:<9}{f'{c.bifurcated}/{c.inits}':>8}  "
            f"{_ci(c.ci_low, c.ci_high):<12}{theirs:>8}  "
            f"{_ci(c.their_ci_low, c.their_ci_high):<12}{fisher:>9}  {c.defects}")
    lines.append("* never measured by them (a placeholder 0, not a count)")
    lines += [f"defect {k}: {v[0]}" for k, v in DEFECTS.items()]
    walls = r.to_dict()["our_wall_s"]
    lines.append("probe wall time per sweep (s, summed over trials; a cell shared by two "
                 "sweeps counts in both): " + ", ".join(f"{s} {w}" for s, w in walls.items())
                 + f"; theirs on an RTX 3060: batch_size {THEIR_MINUTES['batch_size']} min, "
                 f"sample_size {THEIR_MINUTES['sample_size']} min")
    lines.append(f"platform ({r.platform_source}): {platform_summary(r.platform)}")
    lines.append(f"their counts: {_SOURCE}")
    return lines


def figures(r: EpflVolumeReport) -> dict[str, go.Figure]:
    """One figure per sweep (``epfl-volume-<sweep>``): ours and theirs per precision."""
    return {f"epfl-volume-{sweep}": _figure(r, sweep) for sweep in r.plan.sweeps}


def _figure(r: EpflVolumeReport, sweep: str) -> go.Figure:
    precisions = list(r.plan.precisions)
    fig = make_subplots(rows=1, cols=len(precisions), subplot_titles=precisions,
                        shared_yaxes=True)
    for col, precision in enumerate(precisions, start=1):
        cells = [c for c in r.cells if c.sweep == sweep and c.precision == precision]
        for who, color in (("ours", "#1f77b4"), ("theirs", "#d62728")):
            pre = "" if who == "ours" else "their_"
            shown = [c for c in cells if getattr(c, pre + "fraction") is not None]
            frac = [getattr(c, pre + "fraction") for c in shown]
            fig.add_trace(go.Scatter(
                x=[str(c.value) for c in shown], y=frac, mode="markers",
                name=who if who == "ours" else "theirs (100 inits; hollow: never measured)",
                legendgroup=who, showlegend=col == 1, marker={
                    "color": color, "size": 9, "symbol": [
                        "circle" if who == "ours" or c.their_measured else "circle-open"
                        for c in shown]},
                error_y={"type": "data", "symmetric": False,
                         "array": [getattr(c, pre + "ci_high") - f for c, f in zip(shown, frac)],
                         "arrayminus": [f - getattr(c, pre + "ci_low")
                                        for c, f in zip(shown, frac)]},
            ), row=1, col=col)
        fig.update_xaxes(title_text=sweep, type="category", row=1, col=col)
    fig.update_yaxes(title_text="fraction of inits bifurcated", range=[-0.05, 1.05],
                     row=1, col=1)
    fig.update_layout(title=f"EPFL volume, {sweep} sweep: ours vs theirs (95% Clopper-Pearson)",
                      height=380)
    return fig


def note_markdown(r: EpflVolumeReport) -> str:
    """A Markdown note for the study: the verdict first, then the table and the defects."""
    lines = [r.verdict, "", f"Protocol: {PROTOCOL}.", "",
             "| sweep | value | precision | ours | 95% CI | theirs | 95% CI | Fisher p | "
             "defects |", "|---|---|---|---|---|---|---|---|---|"]
    for c in r.cells:
        theirs = "n/a" if c.their_bifurcated is None else (
            f"{c.their_bifurcated}/{c.their_inits}" + ("" if c.their_measured else " (never "
                                                           "measured)"))
        fisher = "n/a" if c.fisher_p is None else f"{c.fisher_p:.3f}"
        lines.append(f"| {c.sweep} | {c.value} | {c.precision} | {c.bifurcated}/{c.inits} | "
                     f"{_ci(c.ci_low, c.ci_high)} | {theirs} | "
                     f"{_ci(c.their_ci_low, c.their_ci_high)} | {fisher} | {c.defects} |")
    lines += ["", "Defects of theirs:"] + [f"- **{k}**: {v[0]}" for k, v in DEFECTS.items()]
    lines += ["", f"Platform ({r.platform_source}): {platform_summary(r.platform)}",
              f"Their counts: {_SOURCE}"]
    return "\n".join(lines)


def write_report(r: EpflVolumeReport, out_dir: str | Path = "results") -> list[Path]:
    """``epfl_volume_<study>.csv`` and ``.html`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"epfl_volume_{r.study}.csv"
    r.table().to_csv(csv_path, index=False, float_format="%.6g")
    html_path = out / f"epfl_volume_{r.study}.html"
    parts = [f"<p><b>{html.escape(r.verdict)}</b></p>",
             f"<p>Protocol: {html.escape(PROTOCOL)}. Their counts: {html.escape(_SOURCE)}.</p>",
             f"<p>Platform ({html.escape(r.platform_source)}): "
             f"{html.escape(platform_summary(r.platform))}</p>",
             "<h2>Defects of theirs</h2><ul>" + "".join(
                 f"<li><b>{html.escape(k)}</b>: {html.escape(v[0])}</li>"
                 for k, v in DEFECTS.items()) + "</ul>"]
    for i, fig in enumerate(figures(r).values()):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts += ["<h2>Cells</h2>", html_table(r.table())]
    html_path.write_text(html_page(f"EPFL volume reproduction: {r.study}", parts),
                         encoding="utf-8")
    for path in (csv_path, html_path):
        logger.info("wrote %s", path)
    return [csv_path, html_path]




# ----------------------------------------------------------------------------------
@dataclass
class EpflVolumeRun:
    """What :func:`reproduce_epfl_volume` ran and wrote."""

    report: EpflVolumeReport
    run: StudyRun
    files: list[Path]


def reproduce_epfl_volume(
    *, inits: int | None = None, quick: bool = False, precisions: Sequence[str] | None = None,
    images: int | None = None, sweeps: Mapping[str, tuple[int, ...]] | None = None,
    workers: int = 1, storage: str | None = None, output: str | os.PathLike = "results",
    data_dir: str | os.PathLike | None = None, log_dir: str | os.PathLike | None = None,
    debug: bool = False, announce: Callable[[str], None] | None = None,
) -> EpflVolumeRun:
    """``hpo reproduce epfl-volume``: their four volume sweeps as a probe study (created or
    resumed), run by ``workers`` local processes, then the report written to ``output``.

    Args:
        inits: initialisations per cell (default 100; ``quick``: 6).
        quick: 7 cells, 6 inits, the first 5,000 images per pass (not their protocol).
        images, sweeps: fewer images per pass / other sweep values (tests, custom runs).
    """
    from hpo.engine.numerics.platform import platform_record
    from hpo.storage.urls import resolve_storage_url

    p = plan(inits=inits, quick=quick, precisions=tuple(precisions or PRECISIONS),
             images=images, sweeps=sweeps)
    cfg = epfl_volume_config(p, resolve_storage_url(None, storage))
    summary = (f"{cfg.n_trials} trials ({len(p.cells())} cells x {len(p.precisions)} "
               f"precisions x {cfg.probe.inits}-init slices)")
    run = run_study(cfg, workers=workers, storage=cfg.storage, log_dir=log_dir,
                    data_dir=data_dir, debug=debug, announce=announce, summary=summary)
    report = build_report(run.study, p, platform=platform_record())
    files = write_report(report, output)
    publish_reproduction([run.study], note=note_markdown(report), figures=figures(report),
                         files=files, url=cfg.storage)
    return EpflVolumeRun(report, run, files)
