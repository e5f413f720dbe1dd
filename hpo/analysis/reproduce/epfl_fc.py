"""The report of ``hpo reproduce epfl-fc``: the EPFL FC sweep, K seeds per cell, beside theirs.

Per cell (grid, precision, kink_grad, alpha): mean test accuracy over seeds with a Student-t
95% interval beside their one number (``hpo/analysis/paper/epfl_fc.csv``, each row naming its
file), the paired difference to alpha = 0 (same seed, precision, kink_grad), and per grid and
precision the spread between seeds at alpha = 0. The verdict per precision: did alpha move
accuracy by more than a change of seed does, and do ``set`` and ``multiply`` differ.
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.subplots import make_subplots
from scipy import stats as sps

from hpo.analysis.hints import no_kink_line
from hpo.analysis.publish import publish_reproduction
from hpo.analysis.report import html_page, html_table
from hpo.analysis.stats import paired_test
from hpo.config.reproduce.epfl_fc import (
    PRECISIONS,
    EpflFcPlan,
    cell_name,
    epfl_fc_config,
    plan,
)
from hpo.engine.numerics.platform import platform_record, platform_summary
from hpo.objective.attrs import trial_attrs
from hpo.storage.urls import resolve_storage_url
from hpo.worker.local import StudyRun, run_study

__all__ = [
    "DEFECTS",
    "Cell",
    "EpflFcReport",
    "EpflFcRun",
    "KinkContrast",
    "SeedSpread",
    "build_report",
    "figures",
    "format_text",
    "note_markdown",
    "paper_rows",
    "reproduce_epfl_fc",
    "t_interval",
    "write_report",
]

logger = logging.getLogger(__name__)

REPO = "github.com/CS-433/ml-project-2-ristrettolearning-2"
PAPER_SOURCE = (f"Martorella et al., ReScience C 2023 ([Re] Numerical influence of ReLU'(0)); "
                f"{REPO}; hpo/analysis/paper/epfl_fc.csv names the file of every number")
INTERVAL = "95% Student-t interval over seeds (mean and paired mean difference)"
# Their defects, each with what it touches (shown next to those numbers).
DEFECTS: Mapping[str, str] = {
    "16-bit": "their '16-bit' is bfloat16 (torch.set_default_dtype(torch.bfloat16)), not "
              "float16; they have no float16 run: our float16 cells have no number of theirs",
    "set": "their backward sets the gradient to alpha at exact zeros (grad_input[input == 0] "
           "= alpha, ristretto/activations/relu.py) instead of multiplying the incoming "
           "gradient: our kink_grad=set reproduces it, multiply is the chain rule",
    "one-seed": "every cell of theirs is one run (init seed 42069, no shuffling): no spread, "
                "no interval; a difference between their cells may be a change of seed",
    "not-subgradient": "alpha outside [0, 1] (-0.5, 2, 4, 8) is not a subgradient of ReLU at 0; "
                       "the engine runs it as given",
}
PROTOCOL = (
    "FC 784-200-200-200-10 on MNIST, ToTensor inputs, Adam lr 1e-3, batch 128; test accuracy "
    "on the official test set (their 'validation'). Differences from theirs: 1000 training "
    "images held out as our validation split, batches shuffled by the seed (theirs: not "
    "shuffled), seeds 0..K-1 (theirs: one init seed, 42069)"
)


@dataclass(frozen=True)
class Cell:
    """One (grid, precision, kink_grad, alpha): ours over seeds beside theirs."""

    grid: str
    epochs: int
    precision: str
    kink_grad: str
    alpha: float
    seeds: int  # complete runs
    mean: float | None  # test accuracy, %
    ci_low: float | None
    ci_high: float | None
    sd: float | None
    theirs: float | None
    theirs_kind: str | None  # published | derived
    theirs_source: str | None
    diff_mean: float | None  # paired: this alpha minus alpha 0, pp
    diff_ci_low: float | None
    diff_ci_high: float | None
    diff_p: float | None
    diff_test: str | None
    pairs: int
    identical_pairs: int  # same params_sha256 as the alpha-0 run of the seed
    kink_hits: float | None  # mean per run
    moved: bool | None  # the difference exceeds a change of seed (None: alpha 0 or no data)
    defects: str  # the DEFECTS keys that touch this row


@dataclass(frozen=True)
class SeedSpread:
    """Spread between seeds at alpha = 0 for one (grid, precision, kink_grad)."""

    grid: str
    precision: str
    kink_grad: str
    seeds: int
    sd: float | None
    range: float | None
    seed_change: float | None  # mean |acc(s) - acc(s')| over seed pairs: a change of seed


@dataclass(frozen=True)
class KinkContrast:
    """``set`` minus ``multiply`` at one (grid, precision, alpha), paired by seed."""

    grid: str
    precision: str
    alpha: float
    pairs: int
    identical_pairs: int
    diff_mean: float | None
    ci_low: float | None
    ci_high: float | None
    differ: bool | None


@dataclass(frozen=True)
class EpflFcReport:
    """What ``hpo reproduce epfl-fc`` prints, writes and returns as JSON."""

    study: str
    plan: EpflFcPlan
    cells: list[Cell]
    spreads: list[SeedSpread]
    contrasts: list[KinkContrast]
    verdicts: dict[str, str]  # precision -> verdict
    trials_complete: int
    trials_total: int
    platform: dict[str, Any] | None
    platform_source: str
    wall_time_s: float  # summed over complete runs
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.trials_complete == self.trials_total

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study, "complete": self.complete, "quick": self.plan.quick,
            "trials_complete": self.trials_complete, "trials_total": self.trials_total,
            "seeds": self.plan.seeds, "precisions": list(self.plan.precisions),
            "train_subset": self.plan.train_subset,
            "grids": {g: {"alphas": list(a), "epochs": e} for g, (a, e) in self.plan.grids.items()},
            "protocol": PROTOCOL, "interval": INTERVAL, "paper_source": PAPER_SOURCE,
            "defects": dict(DEFECTS), "verdicts": self.verdicts, "notes": self.notes,
            "platform": self.platform, "platform_source": self.platform_source,
            "wall_time_s": self.wall_time_s,
            "cells": [asdict(c) for c in self.cells],
            "seed_spread": [asdict(s) for s in self.spreads],
            "set_vs_multiply": [asdict(k) for k in self.contrasts],
        }

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(c) for c in self.cells])


# ----------------------------------------------------------------------------------
def paper_rows() -> dict[tuple[str, str, float], dict[str, str]]:
    """``(grid, precision, alpha) -> row`` of the shipped ``epfl_fc.csv``."""
    text = resources.files("hpo.analysis").joinpath("paper", "epfl_fc.csv").read_text("utf-8")
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    return {(r["grid"], r["precision"], float(r["alpha"])): r for r in rows}


def t_interval(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Student-t 95% interval of the mean (``(None, None)`` under two values; a zero
    spread gives the mean twice)."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None, None
    mean, sem = float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))
    half = float(sps.t.ppf(0.975, x.size - 1)) * sem
    return mean - half, mean + half


def _seed_change(values: Sequence[float]) -> float | None:
    pairs = list(itertools.combinations(values, 2))
    return float(np.mean([abs(a - b) for a, b in pairs])) if pairs else None


def _runs(study: optuna.Study) -> tuple[dict[tuple[str, str, int], dict[str, Any]], dict, float]:
    """``(cell, precision, seed) -> attrs`` of the complete trials (the first of copies),
    the first platform record found, the summed wall time."""
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    platform: dict[str, Any] = {}
    wall = 0.0
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    for t in sorted(done, key=lambda t: t.number):
        key = (t.params["cell"], t.params["precision"], int(t.params["seed"]))
        if key in runs:
            continue
        attrs = trial_attrs(t.user_attrs)
        runs[key] = attrs
        wall += float(attrs.get("wall_time_s") or 0.0)
        platform = platform or dict(attrs.get("platform") or {})
    return runs, platform, wall


def _acc(attrs: Mapping[str, Any]) -> float:
    return 100.0 * float(attrs["test_accuracy"])


def _defects(precision: str, alpha: float, has_theirs: bool) -> str:
    keys = []
    if precision != "float32":
        keys.append("16-bit")
    if has_theirs:
        keys += ["one-seed", *(["set"] if alpha != 0 else [])]
    if not 0 <= alpha <= 1:
        keys.append("not-subgradient")
    return ",".join(keys)


def _spread(grid: str, precision: str, kink: str, zero: Sequence[float]) -> SeedSpread:
    return SeedSpread(
        grid=grid, precision=precision, kink_grad=kink, seeds=len(zero),
        sd=float(np.std(zero, ddof=1)) if len(zero) > 1 else None,
        range=float(np.ptp(zero)) if zero else None, seed_change=_seed_change(zero),
    )


def _cell(p: EpflFcPlan, key: tuple[str, str, str, float], runs: Mapping, paper: Mapping,
          change: float | None) -> Cell:
    """One row: ``key`` is (grid, precision, kink_grad, alpha)."""
    grid, precision, kink, alpha = key
    epochs = p.grids[grid][1]
    mine = {s: runs[(cell_name(grid, alpha, kink), precision, s)] for s in range(p.seeds)
            if (cell_name(grid, alpha, kink), precision, s) in runs}
    zero = {s: runs[(cell_name(grid, 0.0, kink), precision, s)] for s in range(p.seeds)
            if (cell_name(grid, 0.0, kink), precision, s) in runs}
    acc = [_acc(a) for a in mine.values()]
    low, high = t_interval(acc)
    common = sorted(set(mine) & set(zero)) if alpha != 0 else []
    diffs = [_acc(mine[s]) - _acc(zero[s]) for s in common]
    dlow, dhigh = t_interval(diffs)
    test, pval = paired_test(diffs) if diffs else (None, None)
    dmean = float(np.mean(diffs)) if diffs else None
    moved = None
    if dlow is not None and change is not None:
        moved = not (dlow <= 0 <= dhigh) and abs(dmean) > change
    theirs = paper.get((grid, precision, float(alpha)))
    hits = [float(a.get("kink_hits") or 0) for a in mine.values()]
    return Cell(
        grid=grid, epochs=epochs, precision=precision, kink_grad=kink, alpha=alpha,
        seeds=len(acc), mean=float(np.mean(acc)) if acc else None, ci_low=low, ci_high=high,
        sd=float(np.std(acc, ddof=1)) if len(acc) > 1 else None,
        theirs=None if theirs is None else float(theirs["accuracy"]),
        theirs_kind=None if theirs is None else theirs["kind"],
        theirs_source=None if theirs is None else f"{theirs['source']}@{theirs['commit'][:7]}",
        diff_mean=dmean, diff_ci_low=dlow, diff_ci_high=dhigh, diff_p=pval, diff_test=test,
        pairs=len(diffs),
        identical_pairs=sum(mine[s].get("params_sha256") == zero[s].get("params_sha256")
                            for s in common),
        kink_hits=float(np.mean(hits)) if hits else None, moved=moved,
        defects=_defects(precision, alpha, theirs is not None),
    )


def _contrast(p: EpflFcPlan, grid: str, precision: str, alpha: float, runs: Mapping,
              change: float | None) -> KinkContrast:
    pairs = []
    for s in range(p.seeds):
        a = runs.get((cell_name(grid, alpha, "set"), precision, s))
        b = runs.get((cell_name(grid, alpha, "multiply"), precision, s))
        if a is not None and b is not None:
            pairs.append((a, b))
    diffs = [_acc(a) - _acc(b) for a, b in pairs]
    low, high = t_interval(diffs)
    mean = float(np.mean(diffs)) if diffs else None
    differ = None
    if low is not None and change is not None:
        differ = not (low <= 0 <= high) and abs(mean) > change
    return KinkContrast(
        grid=grid, precision=precision, alpha=alpha, pairs=len(pairs),
        identical_pairs=sum(a.get("params_sha256") == b.get("params_sha256") for a, b in pairs),
        diff_mean=mean, ci_low=low, ci_high=high, differ=differ,
    )


def build_report(
    study: optuna.Study, p: EpflFcPlan, *, platform: Mapping[str, Any] | None = None
) -> EpflFcReport:
    """Every cell over its seeds beside theirs, the seed spreads, set vs multiply, verdicts.

    Args:
        study: a study created from :func:`hpo.config.reproduce.epfl_fc.epfl_fc_config`.
        p: its plan.
        platform: the record to report when no trial carries one (this process's).
    """
    runs, recorded, wall = _runs(study)
    paper = paper_rows()
    cells, spreads, contrasts = [], [], []
    for grid, (alphas, _epochs) in p.grids.items():
        for precision in p.precisions:
            changes = {}
            for kink in p.kink_grads:
                zero = [_acc(runs[(cell_name(grid, 0.0, kink), precision, s)])
                        for s in range(p.seeds)
                        if (cell_name(grid, 0.0, kink), precision, s) in runs]
                spreads.append(_spread(grid, precision, kink, zero))
                changes[kink] = spreads[-1].seed_change
                cells += [_cell(p, (grid, precision, kink, float(a)), runs, paper, changes[kink])
                          for a in alphas]
            if set(p.kink_grads) == {"set", "multiply"}:
                change = max((c for c in changes.values() if c is not None), default=None)
                contrasts += [_contrast(p, grid, precision, float(a), runs, change)
                              for a in alphas]
    verdicts = {pr: _verdict(pr, cells, spreads, contrasts) for pr in p.precisions}
    total = len(p.cells()) * len(p.precisions) * p.seeds
    return EpflFcReport(
        study=study.study_name, plan=p, cells=cells, spreads=spreads, contrasts=contrasts,
        verdicts=verdicts, trials_complete=len(runs), trials_total=total,
        platform=dict(recorded or platform or {}) or None,
        platform_source="trials" if recorded else "report", wall_time_s=round(wall, 3),
        notes=_notes(p),
    )


def _notes(p: EpflFcPlan) -> list[str]:
    notes = [
        "alpha = 0 with kink_grad set writes +0 where PyTorch's backward writes +0: the same "
        "computation as multiply (set vs multiply at alpha = 0 is a control: every pair "
        "should be bitwise identical)",
    ]
    if p.quick:
        notes.insert(0, "QUICK run: fewer alphas and epochs and "
                     f"{p.train_subset} training images; not their protocol, a sanity check")
    elif p.train_subset is not None:
        notes.insert(0, f"only {p.train_subset} training images: not their protocol")
    return notes


def _verdict(precision: str, cells: Sequence[Cell], spreads: Sequence[SeedSpread],
             contrasts: Sequence[KinkContrast]) -> str:
    """One sentence: did alpha move accuracy beyond a change of seed; do set/multiply differ."""
    mine = [c for c in cells if c.precision == precision and c.alpha != 0]
    judged = [c for c in mine if c.moved is not None]
    change = [s.seed_change for s in spreads if s.precision == precision
              and s.seed_change is not None]
    if not judged or not change:
        return f"{precision}: not enough seeds yet (need 2 per cell, paired with alpha = 0)"
    moved = [c for c in judged if c.moved]
    worst = max(judged, key=lambda c: abs(c.diff_mean))
    seed = f"a change of seed moves it {min(change):.2f}-{max(change):.2f} pp"
    if moved:
        listed = ", ".join(f"{c.grid} alpha={c.alpha:g} {c.kink_grad} {c.diff_mean:+.2f} pp"
                           for c in sorted(moved, key=lambda c: -abs(c.diff_mean))[:4])
        first = (f"{precision}: alpha moved test accuracy by more than a change of seed in "
                 f"{len(moved)}/{len(judged)} cells ({listed}; {seed})")
    else:
        first = (f"{precision}: alpha did not move test accuracy by more than a change of seed "
                 f"(largest paired difference {worst.diff_mean:+.2f} pp, {worst.grid} "
                 f"alpha={worst.alpha:g} {worst.kink_grad}; {seed})")
    hits = [c.kink_hits for c in cells if c.precision == precision and c.kink_hits is not None]
    if hits and not any(hits):
        first += "; " + no_kink_line(f"these {precision} runs").rstrip(".")
    kc = [k for k in contrasts
          if k.precision == precision and k.alpha != 0 and k.differ is not None]
    if not kc:
        return first + "; set vs multiply: not measured"
    differ = [k for k in kc if k.differ]
    same = sum(k.identical_pairs for k in kc)
    if differ:
        listed = ", ".join(f"{k.grid} alpha={k.alpha:g} {k.diff_mean:+.2f} pp" for k in differ[:4])
        return first + f"; set and multiply differ in {len(differ)}/{len(kc)} alphas ({listed})"
    return (first + f"; set and multiply do not differ by more than a change of seed "
            f"({same}/{sum(k.pairs for k in kc)} pairs bitwise identical)")


# ----------------------------------------------------------------------------------
def _f(x: float | None, spec: str = "6.2f") -> str:
    return "n/a".rjust(len(format(0.0, spec))) if x is None else format(x, spec)


def _ci(low: float | None, high: float | None, spec: str = ".2f") -> str:
    return "[n/a]" if low is None else f"[{low:{spec}}, {high:{spec}}]"


def format_text(r: EpflFcReport) -> list[str]:
    """A readable report: the verdicts, then one line per cell, spreads, set vs multiply."""
    lines = [
        f"EPFL FC sweep reproduction, study {r.study}{' (QUICK)' if r.plan.quick else ''}: "
        f"{r.trials_complete}/{r.trials_total} runs complete, {r.plan.seeds} seeds per cell",
        *[f"verdict {v}" for v in r.verdicts.values()],
        f"{'grid':<5} {'precision':<9} {'kink':<8} {'alpha':>5} {'ours %':>7} {'95% CI':<16} "
        f"{'theirs':>8} {'vs alpha=0 pp':>13} {'95% CI':<16} {'same':>5} {'kinks':>7} defects",
    ]
    for c in r.cells:
        star = "*" if c.theirs_kind == "derived" else ""
        theirs = "" if c.theirs is None else f"{c.theirs:.2f}{star}"
        same = f"{c.identical_pairs}/{c.pairs}" if c.pairs else ""
        mark = " MOVED" if c.moved else ""
        lines.append(
            f"{c.grid:<5} {c.precision:<9} {c.kink_grad:<8} {c.alpha:>5g} {_f(c.mean, '7.2f')} "
            f"{_ci(c.ci_low, c.ci_high):<16} {theirs:>8} {_f(c.diff_mean, '+13.2f')} "
            f"{_ci(c.diff_ci_low, c.diff_ci_high, '+.2f'):<16} {same:>5} "
            f"{_f(c.kink_hits, '7.0f')} {c.defects}{mark}"
        )
    lines.append("theirs: * = derived by us from their pickled metrics (see epfl_fc.csv)")
    lines.append("seed spread at alpha = 0 (test accuracy, pp): grid precision kink: sd, range, "
                 "mean |change of seed|")
    for s in r.spreads:
        lines.append(f"  {s.grid} {s.precision} {s.kink_grad}: n={s.seeds} sd {_f(s.sd, '.3f')}"
                     f", range {_f(s.range, '.2f')}, change of seed {_f(s.seed_change, '.2f')}")
    lines.append("set minus multiply, paired by seed (pp):")
    for k in r.contrasts:
        lines.append(f"  {k.grid} {k.precision} alpha={k.alpha:g}: {_f(k.diff_mean, '+.2f')} "
                     f"{_ci(k.ci_low, k.ci_high, '+.2f')}, {k.identical_pairs}/{k.pairs} "
                     f"identical{' DIFFER' if k.differ else ''}")
    lines += [f"defect {key}: {text}" for key, text in DEFECTS.items()]
    lines += [f"note: {n}" for n in r.notes]
    lines.append(f"protocol: {PROTOCOL}")
    lines.append(f"platform ({r.platform_source}): {platform_summary(r.platform)}; runs took "
                 f"{r.wall_time_s:.0f} s of training in all")
    return lines


def note_markdown(r: EpflFcReport) -> str:
    """A Markdown note for the dashboard; its first line is the verdict."""
    first = " | ".join(r.verdicts.values())
    body = [
        first, "",
        f"Study `{r.study}`{' (QUICK: not their protocol)' if r.plan.quick else ''}: "
        f"{r.trials_complete}/{r.trials_total} runs, {r.plan.seeds} seeds per cell; "
        f"{INTERVAL}. Their numbers: {PAPER_SOURCE}.", "",
        "| grid | precision | kink | alpha | ours % | 95% CI | theirs | vs alpha=0 (pp) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in r.cells:
        theirs = "" if c.theirs is None else f"{c.theirs:.2f} ({c.theirs_kind})"
        body.append(f"| {c.grid} | {c.precision} | {c.kink_grad} | {c.alpha:g} | "
                    f"{_f(c.mean, '.2f')} | {_ci(c.ci_low, c.ci_high)} | {theirs} | "
                    f"{_f(c.diff_mean, '+.2f')} {_ci(c.diff_ci_low, c.diff_ci_high, '+.2f')} |")
    body += ["", *[f"- **{k}**: {t}" for k, t in DEFECTS.items()],
             *[f"- {n}" for n in r.notes], f"- platform: {platform_summary(r.platform)}"]
    return "\n".join(body)


_COLOURS = {"float32": "#1f77b4", "bfloat16": "#ff7f0e", "float16": "#2ca02c"}


def figures(r: EpflFcReport) -> dict[str, go.Figure]:
    """``epfl-fc-accuracy`` (ours with intervals, theirs as open squares) and
    ``epfl-fc-paired`` (difference to alpha = 0 with intervals), one column per grid."""
    grids = list(r.plan.grids)
    out = {}
    for fig_id, title in (("epfl-fc-accuracy", "test accuracy (%)"),
                          ("epfl-fc-paired", "paired difference to alpha = 0 (pp)")):
        fig = make_subplots(rows=1, cols=len(grids), subplot_titles=[
            f"{g} ({r.plan.grids[g][1]} epochs)" for g in grids])
        for col, grid in enumerate(grids, start=1):
            for precision, kink in itertools.product(r.plan.precisions, r.plan.kink_grads):
                cs = sorted((c for c in r.cells if (c.grid, c.precision, c.kink_grad)
                             == (grid, precision, kink)), key=lambda c: c.alpha)
                _add_trace(fig, cs, fig_id, precision, kink, col)
            if fig_id == "epfl-fc-accuracy":
                _add_theirs(fig, r, grid, col)
            fig.update_xaxes(title_text="ReLU'(0) = alpha", row=1, col=col)
        fig.update_yaxes(title_text=title, row=1, col=1)
        fig.update_layout(title=f"EPFL FC sweep: {title}, {INTERVAL}", height=420)
        out[fig_id] = fig
    return out


def _add_trace(fig: go.Figure, cs: Sequence[Cell], fig_id: str, precision: str, kink: str,
               col: int) -> None:
    paired = fig_id == "epfl-fc-paired"
    pts = [c for c in cs if (c.diff_mean if paired else c.mean) is not None]
    if not pts:
        return
    y = [c.diff_mean if paired else c.mean for c in pts]
    lo = [c.diff_ci_low if paired else c.ci_low for c in pts]
    hi = [c.diff_ci_high if paired else c.ci_high for c in pts]
    fig.add_trace(go.Scatter(
        x=[c.alpha for c in pts], y=y, mode="lines+markers", name=f"{precision} {kink}",
        legendgroup=f"{precision} {kink}", showlegend=col == 1,
        line={"color": _COLOURS.get(precision), "dash": "solid" if kink == "set" else "dot"},
        error_y={"type": "data", "symmetric": False,
                 "array": [0 if h is None else h - v for h, v in zip(hi, y)],
                 "arrayminus": [0 if low is None else v - low for low, v in zip(lo, y)]},
    ), row=1, col=col)


def _add_theirs(fig: go.Figure, r: EpflFcReport, grid: str, col: int) -> None:
    for precision in r.plan.precisions:
        cs = sorted({c.alpha: c for c in r.cells if c.grid == grid and c.precision == precision
                     and c.theirs is not None}.values(), key=lambda c: c.alpha)
        if cs:
            fig.add_trace(go.Scatter(
                x=[c.alpha for c in cs], y=[c.theirs for c in cs], mode="markers",
                name=f"theirs {precision} (one seed)", legendgroup=f"theirs {precision}",
                showlegend=col == 1, marker={"symbol": "square-open", "size": 10,
                                              "color": _COLOURS.get(precision)},
            ), row=1, col=col)


def write_report(r: EpflFcReport, out_dir: str | Path = "results") -> list[Path]:
    """``epfl_fc_<study>.csv`` (one row per cell) and ``epfl_fc_<study>.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"epfl_fc_{r.study}.csv"
    r.table().to_csv(csv_path, index=False, float_format="%.6g")
    html_path = out / f"epfl_fc_{r.study}.html"
    esc = html.escape
    parts = [
        "<h2>Verdicts</h2><ul>" + "".join(f"<li>{esc(v)}</li>" for v in r.verdicts.values())
        + "</ul>",
        f"<p>{r.trials_complete}/{r.trials_total} runs complete, {r.plan.seeds} seeds per "
        f"cell. {esc(INTERVAL)}. Protocol: {esc(PROTOCOL)}. Theirs: {esc(PAPER_SOURCE)}.</p>",
        "<h2>Their defects, and the columns they touch (column <code>defects</code>)</h2><ul>"
        + "".join(f"<li><b>{esc(k)}</b>: {esc(t)}</li>" for k, t in DEFECTS.items()) + "</ul>",
        "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in r.notes) + "</ul>",
        f"<p>Platform ({esc(r.platform_source)}): {esc(platform_summary(r.platform))}</p>",
    ]
    for i, fig in enumerate(figures(r).values()):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts += ["<h2>Cells</h2>", html_table(r.table()),
              "<h2>Seed spread at alpha = 0</h2>",
              html_table(pd.DataFrame([asdict(s) for s in r.spreads])),
              "<h2>set minus multiply, paired by seed</h2>",
              html_table(pd.DataFrame([asdict(k) for k in r.contrasts]))]
    html_path.write_text(html_page(f"EPFL FC sweep reproduction: {r.study}", parts),
                         encoding="utf-8")
    for path in (csv_path, html_path):
        logger.info("wrote %s", path)
    return [csv_path, html_path]




# ----------------------------------------------------------------------------------
@dataclass
class EpflFcRun:
    """What :func:`reproduce_epfl_fc` ran and wrote."""

    report: EpflFcReport
    run: StudyRun
    files: list[Path]


def reproduce_epfl_fc(
    *, seeds: int | None = None, quick: bool = False, precisions: Sequence[str] | None = None,
    train_subset: int | None = None, workers: int = 1, storage: str | None = None,
    output: str | Path = "results", data_dir: str | Path | None = None,
    log_dir: str | Path | None = None, debug: bool = False,
    announce: Callable[[str], None] | None = None,
) -> EpflFcRun:
    """``hpo reproduce epfl-fc``: the FC sweep as a train study (created or resumed), run by
    ``workers`` local processes, then its report written to ``output``.

    Args:
        seeds: seeds per cell (default 5).
        quick: fewer alphas and epochs on 4000 training images (the study name says so).
        precisions: a subset of float32, bfloat16, float16 (default: all three).
        train_subset: only the first N training images (not their protocol).
    """
    p = plan(seeds=seeds, quick=quick, train_subset=train_subset,
             precisions=tuple(precisions or PRECISIONS))
    cfg = epfl_fc_config(p, resolve_storage_url(None, storage))
    summary = (f"{cfg.n_trials} runs ({len(p.cells())} cells x {len(p.precisions)} precisions "
               f"x {p.seeds} seeds){' QUICK' if p.quick else ''}")
    run = run_study(cfg, workers=workers, storage=cfg.storage, log_dir=log_dir,
                    data_dir=data_dir, debug=debug, announce=announce, summary=summary)
    report = build_report(run.study, p, platform=platform_record())
    files = write_report(report, output)
    publish_reproduction([run.study], note=note_markdown(report), figures=figures(report),
                         files=files, url=cfg.storage)
    return EpflFcRun(report, run, files)
