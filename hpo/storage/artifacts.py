"""The study artifact store: Optuna's :class:`~optuna.artifacts.FileSystemArtifactStore` in a
folder beside the storage, shared by ``hpo compare`` (which uploads its report) and
``hpo dashboard`` (which serves it).

Folder, first found: ``--artifacts DIR``, ``$HPO_ARTIFACT_DIR``, ``artifacts/`` beside a
SQLite file (``sqlite:///storage/x.db`` -> ``storage/artifacts/``), else
``storage/artifacts/`` in the current directory (the folder the default SQLite storage uses),
for PostgreSQL and other servers.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from hpo.errors import UsageError
from hpo.storage.urls import sqlite_path

__all__ = [
    "DEFAULT_DIR",
    "ENV_VAR",
    "artifact_dir",
    "check_artifact_dir",
    "open_artifact_store",
    "upload_study_file",
]

ENV_VAR = "HPO_ARTIFACT_DIR"
DEFAULT_DIR = Path("storage") / "artifacts"


def artifact_dir(url: str, override: str | os.PathLike | None = None) -> Path:
    """The artifact folder for the storage at ``url`` (see the module docstring)."""
    for given in (override, os.environ.get(ENV_VAR)):
        if given:
            return Path(given).expanduser()
    database = sqlite_path(url)
    if database:
        return Path(database).expanduser().parent / "artifacts"
    return DEFAULT_DIR


def check_artifact_dir(url: str, override: str | os.PathLike | None = None) -> Path:
    """The artifact folder for ``url``, checked (not created) to be a folder that can be
    made or written: an existing writable folder, or a path whose nearest existing parent is
    one.

    Raises:
        UsageError: a file is in the way, or the folder cannot be written.
    """
    folder = artifact_dir(url, override)
    fix = f"fix: pass --artifacts DIR (or set ${ENV_VAR}) to a writable folder."
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"artifact folder {str(folder)!r} is a file, not a folder; {fix}")
    nearest = folder
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        raise UsageError(
            f"artifact folder {str(folder)!r} cannot be made: {str(nearest)!r} is a file; {fix}"
        )
    if not os.access(nearest, os.W_OK | os.X_OK):
        what = "is" if nearest == folder else f"cannot be made in {str(nearest)!r}:"
        raise UsageError(f"artifact folder {str(folder)!r} {what} not writable; {fix}")
    return folder


def open_artifact_store(
    url: str, override: str | os.PathLike | None = None, *, create: bool = False
) -> FileSystemArtifactStore:
    """The artifact store for ``url``; with ``create`` the folder is made (and checked to be a
    writable folder) first.

    Raises:
        UsageError: ``create`` and the folder cannot be made or written (nothing written).
    """
    if not create:
        return FileSystemArtifactStore(str(artifact_dir(url, override)))
    folder = check_artifact_dir(url, override)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create the artifact folder {str(folder)!r} ({exc.strerror}); fix: pass "
            f"--artifacts DIR (or set ${ENV_VAR}) to a writable folder."
        ) from exc
    return FileSystemArtifactStore(str(folder))


def upload_study_file(
    store: FileSystemArtifactStore, study: optuna.Study, path: str | os.PathLike,
    *, mimetype: str | None = None,
) -> str:
    """Upload ``path`` as an artifact of ``study``; return its artifact id.

    Optuna 4.0.0 and 5.0.0 both take keyword-only ``artifact_store``, ``file_path`` and
    ``study_or_trial`` (the function is experimental: its warning is silenced here).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return upload_artifact(
            artifact_store=store, file_path=str(path), study_or_trial=study, mimetype=mimetype
        )
