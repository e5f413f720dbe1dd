"""``hpo reproduce section4``: the paper's Section 4 protocols run as studies, then reported.

Per cell (protocol, batch norm, ReLU'(0)): our last-epoch test accuracy (mean, 95% t
interval over seeds), the paper's (mean +- std over its runs, n: ``hpo/analysis/paper/
section4.csv``, derived from deel-ai/relu-prime), the paired difference to ReLU'(0) = 0 (same
seed), and per protocol the collapse point: the smallest alpha whose mean accuracy is below
twice chance. A diverged run counts at chance (the paper's NaN runs score 10.00 %).
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState
from scipy import stats

from hpo.analysis.publish import publish_reproduction
from hpo.analysis.report import html_page, html_table
from hpo.config.reproduce.section4 import (
    PROTOCOLS,
    QUICK,
    Section4Plan,
    cell_name,
    plan,
    section4_configs,
)
from hpo.engine.numerics.platform import platform_record
from hpo.objective.attrs import trial_attrs
from hpo.storage.urls import resolve_storage_url
from hpo.worker.local import StudyRun, run_study
from hpo.worker.pool import check_data

__all__ = [
    "Cell",
    "Section4Report",
    "Section4Run",
    "build_report",
    "export_subset",
    "figures",
    "format_text",
    "note_markdown",
    "paper_rows",
    "reproduce_section4",
    "write_report",
]

CHANCE = 10.0  # %: every protocol has 10 classes
COLLAPSE_BELOW = 2 * CHANCE
_PAPER_FILE = "hpo/analysis/paper/section4.csv"
_NOT_COMPARABLE = ("--quick: 1 epoch on a few hundred images, 2 alphas, 2 seeds: "
                   "NOT comparable to the paper's numbers")


@dataclass(frozen=True)
class Cell:
    """One (protocol, batch norm, alpha): ours beside the paper's (accuracies in %)."""

    protocol: str
    batch_norm: bool
    alpha: float
    lr: float
    runs: int  # complete runs (diverged ones included, at chance)
    diverged: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    diff_mean: float | None  # paired: ours at alpha - ours at 0, same seed
    diff_ci_low: float | None
    diff_ci_high: float | None
    pairs: int
    paper_mean: float | None
    paper_std: float | None
    paper_n: int | None
    paper_source: str | None


@dataclass(frozen=True)
class Section4Report:
    """What ``hpo reproduce section4`` prints, writes and returns as JSON."""

    plan: Section4Plan
    studies: list[str]
    cells: list[Cell]
    collapse: dict[str, dict[str, float | None]]  # "<stem>_<bn|nobn>" -> ours, paper
    trials_complete: int
    trials_total: int
    platform: dict[str, Any] | None

    @property
    def complete(self) -> bool:
        return self.trials_complete == self.trials_total

    @property
    def comparable(self) -> bool:
        return not self.plan.quick and self.plan.epochs is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "studies": self.studies, "complete": self.complete, "quick": self.plan.quick,
            "comparable": self.comparable,
            "note": _NOT_COMPARABLE if self.plan.quick else None,
            "trials_complete": self.trials_complete, "trials_total": self.trials_total,
            "metric": "test accuracy (%) after the last epoch; diverged runs at chance",
            "interval": "95% t interval over seeds (scipy.stats.t)",
            "collapse_rule": f"smallest alpha whose mean accuracy is below {COLLAPSE_BELOW:g} %",
            "collapse": self.collapse,
            "paper_source": f"{_PAPER_FILE} (derived from github.com/deel-ai/relu-prime)",
            "paper": paper_rows(),
            "platform": self.platform,
            "cells": [asdict(c) for c in self.cells],
        }

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(c) for c in self.cells])


def _key(stem: str, bn: bool) -> str:
    return f"{stem}_{'bn' if bn else 'nobn'}"


def paper_rows() -> list[dict[str, Any]]:
    """The shipped paper table (``section4.csv``), one dict per (protocol, bn, alpha)."""
    text = resources.files("hpo.analysis").joinpath("paper", "section4.csv").read_text("utf-8")
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    out = []
    for r in rows:
        out.append({"protocol": r["protocol"], "batch_norm": r["batch_norm"] == "true",
                    "alpha": float(r["alpha"]), "n": int(r["n"]), "mean": float(r["mean"]),
                    "std": float(r["std"]), "runs_below_20": int(r["runs_below_20"]),
                    "source": r["source"]})
    return out


def t_interval(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """Mean and 95% t interval (``None`` bounds with fewer than 2 values or no spread)."""
    if not values:
        return None, None, None
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def _collapse(points: Sequence[tuple[float, float | None]]) -> float | None:
    below = [a for a, m in sorted(points) if m is not None and m < COLLAPSE_BELOW]
    return below[0] if below else None


def _accuracies(study: optuna.Study) -> tuple[dict[str, tuple[float, bool]], Any]:
    """cell -> (test accuracy %, diverged) of the first complete run, and a platform record."""
    out: dict[str, tuple[float, bool]] = {}
    platform = None
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        attrs = trial_attrs(t.user_attrs)
        diverged = bool(attrs.get("diverged")) and t.state == TrialState.PRUNED
        if t.state != TrialState.COMPLETE and not diverged:
            continue
        acc = attrs.get("test_accuracy")
        if not diverged and acc is None:
            continue
        out.setdefault(t.params["cell"], (CHANCE if diverged else 100.0 * float(acc), diverged))
        platform = platform or attrs.get("platform")
    return out, platform


def build_report(
    studies: Sequence[optuna.Study], p: Section4Plan, *,
    platform: Mapping[str, Any] | None = None,
) -> Section4Report:
    """Our cells from ``studies`` (one per protocol of ``p``, in order) beside the paper."""
    paper = {(r["protocol"], r["batch_norm"], r["alpha"]): r for r in paper_rows()}
    cells: list[Cell] = []
    collapse: dict[str, dict[str, float | None]] = {}
    done = total = 0
    recorded = None
    for (stem, bn), study in zip(p.protocols, studies):
        got, rec = _accuracies(study)
        recorded = recorded or rec
        seeds = range(p.runs(stem))
        pairs = p.alphas(stem, bn)
        total += len(pairs) * len(seeds)
        done += len(got)
        zero = {s: got[cell_name(pairs[0][0], s)][0] for s in seeds
                if cell_name(pairs[0][0], s) in got}
        for alpha, lr in pairs:
            runs = {s: got[cell_name(alpha, s)] for s in seeds if cell_name(alpha, s) in got}
            mean, low, high = t_interval([acc for acc, _ in runs.values()])
            diffs = [runs[s][0] - zero[s] for s in runs if s in zero]
            dmean, dlow, dhigh = t_interval(diffs)
            theirs = paper.get((stem, bn, alpha))
            cells.append(Cell(
                protocol=stem, batch_norm=bn, alpha=alpha, lr=lr, runs=len(runs),
                diverged=sum(d for _, d in runs.values()), mean=mean, ci_low=low,
                ci_high=high, diff_mean=dmean, diff_ci_low=dlow, diff_ci_high=dhigh,
                pairs=len(diffs), paper_mean=theirs and theirs["mean"],
                paper_std=theirs and theirs["std"], paper_n=theirs and theirs["n"],
                paper_source=theirs and theirs["source"],
            ))
        collapse[_key(stem, bn)] = {
            "ours": _collapse([(c.alpha, c.mean) for c in cells
                               if c.protocol == stem and c.batch_norm == bn]),
            "paper": _collapse([(a, r["mean"]) for (s, b, a), r in paper.items()
                                if s == stem and b == bn]),
        }
    return Section4Report(
        plan=p, studies=[s.study_name for s in studies], cells=cells, collapse=collapse,
        trials_complete=done, trials_total=total,
        platform=dict(recorded or platform or {}) or None,
    )


# ----------------------------------------------------------------------------------
def _f(x: float | None, spec: str = "6.2f") -> str:
    width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
    return "n/a".rjust(width) if x is None else format(x, spec)


def format_text(r: Section4Report) -> list[str]:
    """A readable table: one line per cell, then the collapse points."""
    lines = [f"Section 4 reproduction: {r.trials_complete}/{r.trials_total} runs complete in "
             f"{len(r.studies)} studies ({', '.join(r.studies)})"]
    if r.plan.quick:
        lines.append(f"NOTE {_NOT_COMPARABLE}")
    lines.append(f"{'protocol':<22}{'bn':<4}{'alpha':>6}{'lr':>9}{'n':>4}{'ours %':>8}  "
                 f"{'95% CI':<15}{'vs 0 (pp)':>10}  {'paper % (std, n)':<20}")
    for c in r.cells:
        ci = "n/a" if c.ci_low is None else f"[{c.ci_low:.2f},{c.ci_high:.2f}]"
        theirs = ("n/a" if c.paper_mean is None
                  else f"{c.paper_mean:.2f} ({c.paper_std:.2f}, {c.paper_n})")
        lines.append(f"{c.protocol:<22}{'on' if c.batch_norm else 'off':<4}{c.alpha:>6g}"
                     f"{c.lr:>9.2g}{c.runs:>4}{_f(c.mean, '8.2f')}  {ci:<15}"
                     f"{_f(c.diff_mean, '+10.2f')}  {theirs:<20}")
    for key, point in r.collapse.items():
        lines.append(f"collapse (mean < {COLLAPSE_BELOW:g} %) {key}: ours alpha="
                     f"{point['ours']}, paper alpha={point['paper']}")
    return lines


def figures(r: Section4Report) -> dict[str, go.Figure]:
    """One figure per protocol, id ``section4-<stem>-<bn|nobn>``: accuracy against alpha,
    ours (95% t interval) and the paper's (mean +- std)."""
    out = {}
    paper = paper_rows()
    for stem, bn in r.plan.protocols:
        ours = [c for c in r.cells if c.protocol == stem and c.batch_norm == bn
                and c.mean is not None]
        theirs = [row for row in paper if row["protocol"] == stem and row["batch_norm"] == bn]
        fig = go.Figure()
        fig.add_trace(go.Scatter(
            x=[c.alpha for c in ours], y=[c.mean for c in ours], mode="lines+markers",
            name="ours" + (" (--quick, not comparable)" if r.plan.quick else ""),
            error_y={"type": "data", "symmetric": False,
                     "array": [0 if c.ci_high is None else c.ci_high - c.mean for c in ours],
                     "arrayminus": [0 if c.ci_low is None else c.mean - c.ci_low
                                    for c in ours]},
        ))
        fig.add_trace(go.Scatter(
            x=[row["alpha"] for row in theirs], y=[row["mean"] for row in theirs],
            mode="lines+markers", name="paper (mean +- std)", line={"dash": "dash"},
            error_y={"type": "data", "array": [row["std"] for row in theirs]},
        ))
        fig.add_hline(y=CHANCE, line_dash="dot", annotation_text="chance")
        fig.update_layout(title=f"{stem}, batch norm {'on' if bn else 'off'}",
                          xaxis_title="ReLU'(0)", yaxis_title="test accuracy (%)", height=360)
        out[f"section4-{_key(stem, bn).replace('_bn', '-bn').replace('_nobn', '-nobn')}"] = fig
    return out


def note_markdown(r: Section4Report) -> str:
    """A short note; its first line is the verdict."""
    if r.plan.quick:
        verdict = ("Section 4 --quick ran end to end; its numbers are NOT comparable to the "
                   "paper (1 epoch, a subset).")
    elif not r.complete:
        verdict = f"Section 4: {r.trials_complete}/{r.trials_total} runs so far; no verdict yet."
    else:
        same = sum(point["ours"] == point["paper"] for point in r.collapse.values())
        verdict = (f"Section 4: the collapse point matches the paper's in {same} of "
                   f"{len(r.collapse)} protocols.")
    lines = [verdict, "", "| protocol | bn | alpha | ours % (95% CI) | vs 0 (pp) | paper % |",
             "|---|---|---|---|---|---|"]
    for c in r.cells:
        ci = "" if c.ci_low is None else f" [{c.ci_low:.2f}, {c.ci_high:.2f}]"
        theirs = "n/a" if c.paper_mean is None else f"{c.paper_mean:.2f} +- {c.paper_std:.2f}"
        lines.append(f"| {c.protocol} | {'on' if c.batch_norm else 'off'} | {c.alpha:g} | "
                     f"{_f(c.mean).strip()}{ci} | {_f(c.diff_mean, '+.2f')} | {theirs} |")
    lines += ["", f"Paper: {_PAPER_FILE} (derived from github.com/deel-ai/relu-prime "
              "paper_results/section_4/, each row names its file)."]
    return "\n".join(lines)


def write_report(r: Section4Report, out_dir: str | Path = "results") -> list[Path]:
    """``section4_<tag>.csv`` and ``section4_<tag>.html`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = "quick" if r.plan.quick else "full"
    csv_path, html_path = out / f"section4_{tag}.csv", out / f"section4_{tag}.html"
    r.table().to_csv(csv_path, index=False, float_format="%.6g")
    parts = [f"<p>{html.escape(note_markdown(r).splitlines()[0])}</p>"]
    for i, fig in enumerate(figures(r).values()):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts += ["<h2>Cells</h2>", html_table(r.table())]
    html_path.write_text(html_page("Section 4 reproduction", parts), encoding="utf-8")
    return [csv_path, html_path]


# ----------------------------------------------------------------------------------
@dataclass
class Section4Run:
    """What :func:`reproduce_section4` ran and wrote."""

    report: Section4Report
    runs: list[StudyRun]
    files: list[Path]

    @property
    def exit_code(self) -> int:
        return max((run.exit_code for run in self.runs), default=0)

    @property
    def elapsed_s(self) -> float:
        return sum(run.elapsed_s for run in self.runs)

    def problems(self) -> list[str]:
        return [line for run in self.runs for line in run.problems()]


def _first_per_class(labels: Any, n: int) -> list[int]:
    """The first ``n`` indices taking at most ``ceil(n / 10)`` of each class (every class
    present in a small subset)."""
    cap, seen, out = math.ceil(n / 10), {}, []
    for i, y in enumerate(labels.tolist()):
        if seen.get(y, 0) < cap:
            seen[y] = seen.get(y, 0) + 1
            out.append(i)
            if len(out) == n:
                break
    return out


def export_subset(
    dataset: str, data_dir: str | os.PathLike | None, folder: str | os.PathLike, *,
    train: int, test: int,
) -> str:
    """``imagefolder:PATH``: the first ``train`` training and ``test`` test images of
    ``dataset`` (class-balanced) as lossless PNG files, written once (a re-run reuses them).

    Raises:
        DataError: the dataset's files are missing (one line naming them and where to put
            them) or corrupt.
    """
    from PIL import Image

    from hpo.engine.data.archives import FILES
    from hpo.engine.data.loading import load_raw

    # The source files' checksum in the name: other files (generated ones) get another folder.
    source = FILES[dataset][0].md5[:8] if dataset in FILES else "files"
    path = Path(folder).resolve() / f"{dataset}-{source}-train{train}-test{test}"
    if not path.is_dir():
        raw = load_raw(dataset, data_dir)
        tmp = path.with_name(path.name + f".{os.getpid()}.part")
        for split, images, labels, n in (("train", raw.train_images, raw.train_labels, train),
                                         ("test", raw.test_images, raw.test_labels, test)):
            for i in _first_per_class(labels, n):
                target = tmp / split / str(int(labels[i]))
                target.mkdir(parents=True, exist_ok=True)
                hwc = images[i].permute(1, 2, 0).contiguous().numpy()
                Image.fromarray(hwc, "RGB").save(target / f"{i:06d}.png")
        os.replace(tmp, path)
    return f"imagefolder:{path}"


def reproduce_section4(
    *,
    model: str | None = None,
    dataset: str | None = None,
    batch_norm: str = "both",
    quick: bool = False,
    seeds: int | None = None,
    epochs: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    output: str | os.PathLike = "results",
    data_dir: str | os.PathLike | None = None,
    log_dir: str | os.PathLike | None = None,
    study_dir: str | os.PathLike | None = None,
    debug: bool = False,
    announce: Callable[[str], None] | None = None,
) -> Section4Run:
    """``hpo reproduce section4``: one study per selected protocol (created or resumed), run
    by ``workers`` local processes, then the report written to ``output``. Every dataset is
    checked (``--quick``: its subset exported into the dataset cache, ``HPO_CACHE_DIR``)
    before any study is written.

    Args:
        quick: 1 epoch on a subset, 2 alphas, 2 seeds (not comparable).
        seeds: runs per alpha (default: the paper's, 10 or 5; ``quick``: 2).
        epochs: override the paper's epochs (smoke tests only: not comparable).
        study_dir: the folder of the study files (default: the repository's study_configs).
    """
    p = plan(model=model, dataset=dataset, batch_norm=batch_norm, quick=quick, seeds=seeds,
             epochs=epochs)
    url = resolve_storage_url(None, storage)
    if p.quick:
        # In the dataset cache, not under --out: the path is part of the stored study, so a
        # re-run with another --out must find the same one (and resume).
        folder = Path(os.environ.get("HPO_CACHE_DIR")
                      or Path.home() / ".cache" / "reluprime-hpo" / "datasets") / "section4-quick"
        subsets = {name: export_subset(name, data_dir, folder, train=QUICK["train"]
                                       + QUICK["val"], test=QUICK["test"])
                   for name in dict.fromkeys(PROTOCOLS[s].dataset for s, _ in p.protocols)}
        p = Section4Plan(p.protocols, p.seeds, p.quick, p.epochs, subsets)
    cfgs = section4_configs(p, url, study_dir=study_dir)
    for cfg in cfgs:
        check_data(cfg, data_dir)
    runs = []
    for cfg in cfgs:
        runs.append(run_study(
            cfg, workers=workers, storage=url, data_dir=data_dir, debug=debug,
            log_dir=None if log_dir is None else Path(log_dir) / cfg.name, announce=announce,
            summary=f"{cfg.n_trials} runs ({len(cfg.cells or {})} cells: alpha x seed)",
        ))
        if runs[-1].workers.signal is not None:  # stopped (Ctrl-C): do not start the next
            break
    ran = Section4Plan(p.protocols[:len(runs)], p.seeds, p.quick, p.epochs, p.subsets)
    report = build_report([run.study for run in runs], ran, platform=platform_record())
    files = write_report(report, output)
    publish_reproduction([run.study for run in runs], note=note_markdown(report),
                         figures=figures(report), files=files, url=url)
    return Section4Run(report, runs, files)
