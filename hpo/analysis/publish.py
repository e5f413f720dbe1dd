"""The comparison's answer in the dashboard: the verdicts as the study's note
(optuna-dashboard's :func:`~optuna_dashboard.save_note`), the HTML report as a study artifact
(Optuna's artifact store, :mod:`hpo.storage.artifacts`) and the objective's metric name.

The artifact is uploaded before the note is saved, so a note never names a report that is
not there; each run adds one report artifact and replaces the note.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna_dashboard import save_note

from hpo.analysis.compare import StudyComparison
from hpo.analysis.report import closing_lines, pairs_line
from hpo.analysis.trials import group_label
from hpo.config import StudyConfig
from hpo.storage.artifacts import artifact_dir as resolve_artifact_dir
from hpo.storage.artifacts import open_artifact_store, upload_study_file
from hpo.study.create import name_metric

__all__ = ["Published", "note_markdown", "publish"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """What :func:`publish` wrote on the study."""

    artifact_id: str
    artifact_dir: Path
    note: str


def note_markdown(c: StudyComparison, report: str | None = None) -> str:
    """The study note: headline, one verdict per group, importances, platform warnings."""
    lines = [f"## hpo compare: {c.study}", ""]
    if c.headline:
        lines += [f"**{c.headline}**", ""]
    lines += [f"Compared: {c.metric} (bootstrap seed {c.seed}).", ""]
    for g in c.groups:
        lines.append(f"- **{group_label(g.group)}**: {g.paired.verdict} ({pairs_line(g)})")
    for label, text in closing_lines(c):
        label = label.capitalize()
        lines.append(f"\n**{label}**: {text}" if label == "Warning" else f"\n{label}: {text}")
    if report:
        lines.append(f"\nFull report: {report}")
    return "\n".join(lines).strip() + "\n"


def publish(
    c: StudyComparison, study: optuna.Study, cfg: StudyConfig, html_path: str | Path,
    url: str, artifact_dir: str | Path | None = None,
) -> Published:
    """Upload ``html_path`` as a study artifact, then save the note and name the metric.

    Args:
        url: the storage URL (it decides the default artifact folder).
        artifact_dir: the artifact folder (default: see :mod:`hpo.storage.artifacts`).

    Raises:
        UsageError: the artifact folder cannot be made or written (nothing written then).
    """
    store = open_artifact_store(url, artifact_dir, create=True)
    folder = resolve_artifact_dir(url, artifact_dir)
    html_path = Path(html_path)
    artifact_id = upload_study_file(store, study, html_path, mimetype="text/html")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = note_markdown(
        c, f"study artifact `{html_path.name}` (id {artifact_id}), written {when}; open it "
        "in the dashboard's artifact list (`hpo dashboard` serves the same folder)."
    )
    save_note(study, body)
    if name_metric(study, cfg):
        logger.info("study %s: named its objective %s", c.study, cfg.metric)
    return Published(artifact_id, folder, body)

