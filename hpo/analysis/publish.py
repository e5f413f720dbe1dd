"""An answer on the dashboard's study page: :func:`publish_answer` draws the charts
(optuna-dashboard's ``save_plotly_graph_object``, by stable id), stores the report as a study
artifact (replacing the one of the same name) and saves the note, whose first line is the
verdict. Re-running replaces all three: nothing piles up. :func:`publish` is ``hpo compare``'s
use of it; the ``hpo reproduce`` targets call :func:`publish_answer` with their own charts.
See docs/design.md#the-answer-on-the-study-page.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna_dashboard import save_note, save_plotly_graph_object

from hpo.analysis.compare import StudyComparison
from hpo.analysis.report import closing_lines, dashboard_figures, pairs_line
from hpo.analysis.trials import group_label
from hpo.config import StudyConfig
from hpo.storage.artifacts import artifact_dir as resolve_artifact_dir
from hpo.storage.artifacts import open_artifact_store, replace_study_file
from hpo.study.create import name_metric

__all__ = [
    "publish_reproduction",
    "IMPORTANCE_PANEL_LINE",
    "Published",
    "note_markdown",
    "publish",
    "publish_answer",
    "verdict_line",
]

logger = logging.getLogger(__name__)

IMPORTANCE_PANEL_LINE = (
    "About the dashboard's own Hyperparameter Importance panel: it ranks the parameters by how "
    "much of the variation of the raw objective (accuracy) across differently seeded trials "
    "each explains, seed noise included; it does not measure the paired effect of ReLU'(0) "
    "(each tuned run against its default-derivative run with the same seed), which the "
    "verdict above and the charts on this page give."
)
# optuna-dashboard's rule for graph object ids (letters, digits, - _ : .), first a letter.
_GRAPH_ID = re.compile(r"[A-Za-z][A-Za-z0-9_:.-]*")


@dataclass(frozen=True)
class Published:
    """What :func:`publish_answer` wrote on the study."""

    artifact_id: str | None  # the report's artifact (None: no report)
    artifact_dir: Path
    note: str
    graph_object_ids: tuple[str, ...] = ()
    replaced: bool = False  # the report overwrote an earlier artifact of the same name

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the ids, the folder, whether the report replaced one, the note."""
        return {"artifact_id": self.artifact_id, "artifact_dir": str(self.artifact_dir),
                "graph_object_ids": list(self.graph_object_ids), "replaced": self.replaced,
                "note": self.note}


def publish_answer(
    study: optuna.Study, *, note: str, figures: Mapping[str, go.Figure], report: Path | None,
    url: str, artifact_dir: str | Path | None = None,
) -> Published:
    """Draw ``figures`` on the study page under their ids, store ``report`` as the study
    artifact of its file name (an earlier one is overwritten in place), then save ``note``
    (first line: the verdict) followed by a line naming the report and
    :data:`IMPORTANCE_PANEL_LINE`. Running it again leaves as many charts and artifacts.

    Args:
        figures: graph object id -> figure; keep the ids stable (a run with other ids
            leaves the old charts on the page).
        url: the storage URL (it decides the default artifact folder).

    Raises:
        UsageError: the artifact folder cannot be made or written (nothing written then).
        ValueError: an id optuna-dashboard does not accept (nothing written then).
    """
    bad = [i for i in figures if not _GRAPH_ID.fullmatch(i)]
    if bad:
        raise ValueError(f"graph object ids {bad} are not letters, digits, '-', '_', ':', '.'")
    folder = resolve_artifact_dir(url, artifact_dir)
    artifact_id, replaced, tail = None, False, [IMPORTANCE_PANEL_LINE]
    if report is not None:
        store = open_artifact_store(url, artifact_dir, create=True)
        report = Path(report)
        artifact_id, replaced = replace_study_file(store, study, report, url,
                                                   mimetype=_mimetype(report))
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        tail.insert(0, f"Full report: study artifact `{report.name}` (id {artifact_id}), "
                    f"written {when}; open it in the dashboard's artifact list (`hpo "
                    "dashboard` serves the same folder).")
    for graph_id, figure in figures.items():
        save_plotly_graph_object(study, figure, graph_object_id=graph_id)
    body = note.rstrip() + "\n\n" + "\n\n".join(tail) + "\n"
    save_note(study, body)
    return Published(artifact_id, folder, body, tuple(figures), replaced)


def _mimetype(path: Path) -> str | None:
    return {".html": "text/html", ".csv": "text/csv", ".json": "application/json",
            ".png": "image/png"}.get(path.suffix.lower())


def verdict_line(c: StudyComparison) -> str:
    """The comparison's answer in one line: the headline when every pair is identical, else
    each group's verdict."""
    if c.headline:
        return c.headline
    if not c.groups:
        return f"hpo compare {c.study}: no group to compare"
    return "; ".join(f"{group_label(g.group)}: {g.paired.verdict}" for g in c.groups)


def note_markdown(c: StudyComparison) -> str:
    """The study note: the verdict line first, then one verdict per group, the no-kink line,
    importances (or why none) and platform warnings."""
    lines = [f"**{verdict_line(c)}**", "", f"## hpo compare: {c.study}", ""]
    lines += [f"Compared: {c.metric} (bootstrap seed {c.seed}).", ""]
    for g in c.groups:
        lines.append(f"- **{group_label(g.group)}**: {g.paired.verdict} ({pairs_line(g)})")
    if c.no_kink:
        lines.append(f"\n{c.no_kink}")
    for label, text in closing_lines(c):
        label = label.capitalize()
        lines.append(f"\n**{label}**: {text}" if label == "Warning" else f"\n{label}: {text}")
    return "\n".join(lines).strip() + "\n"


def publish(
    c: StudyComparison, study: optuna.Study, cfg: StudyConfig, html_path: str | Path,
    url: str, artifact_dir: str | Path | None = None,
) -> Published:
    """``hpo compare``'s answer on the study page: :func:`publish_answer` with the paired
    difference and the kink hits per trial (:func:`~hpo.analysis.report.dashboard_figures`),
    the HTML report and :func:`note_markdown`; then the objective is named after the metric.

    Raises:
        UsageError: the artifact folder cannot be made or written (nothing written then).
    """
    done = publish_answer(study, note=note_markdown(c), figures=dashboard_figures(c),
                          report=Path(html_path), url=url, artifact_dir=artifact_dir)
    if name_metric(study, cfg):
        logger.info("study %s: named its objective %s", c.study, cfg.metric)
    return done


def publish_reproduction(
    studies: Sequence[optuna.Study], *, note: str, figures: Mapping[str, go.Figure],
    files: Sequence[Path], url: str, artifact_dir: str | Path | None = None,
) -> list[Published]:
    """An ``hpo reproduce`` report on the study page of each of ``studies``: its charts
    (ours beside the published numbers, under stable ids), its note and its HTML report
    (the ``.html`` of ``files``), replaced on a re-run like :func:`publish_answer`'s."""
    html = next((Path(f) for f in files if Path(f).suffix == ".html"), None)
    return [publish_answer(study, note=note, figures=figures, report=html, url=url,
                           artifact_dir=artifact_dir) for study in studies]
