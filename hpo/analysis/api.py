"""``hpo export``, ``hpo compare`` and ``hpo reproduce`` as Python functions.

Each takes a study by name, study file or :class:`~hpo.config.StudyConfig` (its storage
resolved as the commands resolve it: :func:`hpo.worker.local.study_ref`) and returns
objects, not text: a DataFrame, a :class:`CompareResult`, a :class:`Section3Run`. The
command-line handlers (:mod:`hpo.cli`) only parse, call one of these and print.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hpo.analysis.best_per import best_per_value
from hpo.analysis.compare import StudyComparison, compare_study
from hpo.analysis.export import export_all, trials_frame, write_frame
from hpo.analysis.publish import Published, publish, publish_reproduction
from hpo.analysis.report import write_report
from hpo.analysis.reproduce.section3 import Section3Report, build_report
from hpo.analysis.reproduce.section3 import figures as section3_figures
from hpo.analysis.reproduce.section3 import note_markdown as section3_note
from hpo.analysis.reproduce.section3 import write_report as write_section3
from hpo.config.reproduce.section3 import PRECISIONS, plan, section3_config
from hpo.config.study import StudyConfig
from hpo.engine.numerics.platform import platform_record
from hpo.errors import UsageError
from hpo.storage.artifacts import check_artifact_dir
from hpo.storage.urls import resolve_storage_url
from hpo.worker.local import StudyRef, StudyRun, run_study, study_ref
from hpo.worker.lookup import load_existing_study, open_existing_storage

__all__ = [
    "CompareResult",
    "Section3Run",
    "best_per",
    "compare",
    "export",
    "export_every",
    "reproduce_section3",
]

Study = str | os.PathLike | StudyConfig | StudyRef


def export(
    study: Study,
    *,
    storage: str | None = None,
    path: str | os.PathLike | None = None,
    inline_platform: bool = False,
) -> pd.DataFrame:
    """``hpo export``: the study's trials as a DataFrame, one row per trial (the columns of
    :mod:`hpo.analysis.export`); also written to the CSV file ``path`` when given, with the
    platform columns constant over its rows in ``<name>.platform.json`` beside it (and in
    ``df.attrs["platform"]``) unless ``inline_platform``."""
    name, url = study_ref(study, storage)
    df = trials_frame(load_existing_study(name, url)[0], inline_platform=inline_platform)
    if path is not None:
        write_frame(df, path)
    return df


def export_every(storage: str | None = None, directory: str | os.PathLike = "exports",
                 *, inline_platform: bool = False) -> list[Path]:
    """``hpo export --all``: one ``<study>.csv`` per study of the storage into ``directory``
    (each with its platform side file, as :func:`export`)."""
    url = resolve_storage_url(None, storage)
    return export_all(open_existing_storage(url), directory, inline_platform=inline_platform)


@dataclass
class CompareResult:
    """What :func:`compare` found and wrote."""

    comparison: StudyComparison
    url: str  # the storage the study was read from
    files: list[Path]  # the CSV and HTML report (empty when ``output`` was None)
    published: Published | None  # the note and artifact saved on the study, if asked

    @property
    def table(self) -> pd.DataFrame:
        """One row per group: baseline, best tuned, paired difference, verdict."""
        return self.comparison.table()


def compare(
    study: Study,
    *,
    storage: str | None = None,
    against: Study | None = None,
    metric: str = "test_accuracy",
    seed: int = 0,
    n_resamples: int = 10_000,
    output: str | os.PathLike | None = None,
    publish_report: bool = False,
    artifacts: str | os.PathLike | None = None,
) -> CompareResult:
    """``hpo compare``: tuned ReLU'(0) against PyTorch's default, paired per run.

    Args:
        against: another study (resolved with the same ``storage``), compared distribution
            against distribution.
        output: folder for ``compare_<study>.csv`` and ``.html`` (default: none written).
        publish_report: also draw the charts on the study page, save the verdicts as the
            study's note and the HTML report as a study artifact in ``artifacts`` (needs
            ``output``); a re-run replaces all three (:func:`hpo.analysis.publish.publish`).
    """
    name, url = study_ref(study, storage)
    if publish_report:
        if output is None:
            raise UsageError("publish_report=True needs a report to publish; allowed: an "
                             "output folder; fix: pass output='results'.")
        check_artifact_dir(url, artifacts)  # a bad folder: exit 2 before any work
    loaded, cfg = load_existing_study(name, url)
    other = None
    if against is not None:
        other = load_existing_study(*study_ref(against, storage))
    comparison = compare_study(loaded, cfg, against=other, metric=metric, seed=seed,
                               n_resamples=n_resamples)
    files = [] if output is None else write_report(comparison, output)
    done = publish(comparison, loaded, cfg, files[-1], url, artifacts) if publish_report else None
    return CompareResult(comparison, url, files, done)


def best_per(study: Study, param: str, *, storage: str | None = None) -> pd.DataFrame:
    """``hpo compare --best-per PARAM``: the best trial per value of ``param``."""
    return best_per_value(load_existing_study(*study_ref(study, storage))[0], param)


@dataclass
class Section3Run:
    """What :func:`reproduce_section3` ran and wrote."""

    report: Section3Report  # report.table(): one row per (cell, precision), beside the paper
    run: StudyRun
    files: list[Path]


def reproduce_section3(
    *,
    inits: int | None = None,
    quick: bool = False,
    precisions: Sequence[str] | None = None,
    train_subset: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    output: str | os.PathLike = "results",
    data_dir: str | os.PathLike | None = None,
    log_dir: str | os.PathLike | None = None,
    debug: bool = False,
    announce: Callable[[str], None] | None = None,
) -> Section3Run:
    """``hpo reproduce section3``: the paper's Section 3 as a probe study (created or
    resumed), run by ``workers`` local processes, then its report written to ``output``.

    Args:
        inits: initialisations per cell (default 100; ``quick``: 10).
        quick: 7 of the 13 cells and 10 inits.
        train_subset: only the first N training images (smoke tests, not the protocol).
    """
    p = plan(inits=inits, quick=quick, train_subset=train_subset,
             precisions=tuple(precisions or PRECISIONS))
    cfg = section3_config(p, resolve_storage_url(None, storage))
    summary = (f"{cfg.n_trials} trials ({len(p.cells())} cells x {len(p.precisions)} "
               f"precisions x {cfg.probe.inits}-init slices)")
    run = run_study(cfg, workers=workers, storage=cfg.storage, log_dir=log_dir,
                    data_dir=data_dir, debug=debug, announce=announce, summary=summary)
    # The workers' own record when they stored one on their trials, else this process's.
    report = build_report(run.study, p, platform=platform_record())
    files = write_section3(report, output)
    publish_reproduction([run.study], note=section3_note(report), figures=section3_figures(report),
                         files=files, url=cfg.storage)
    return Section3Run(report, run, files)
