"""The study artifact store: Optuna's :class:`~optuna.artifacts.FileSystemArtifactStore` in a
folder beside the storage, shared by ``hpo compare`` (which uploads its report, replacing the
one of the same name) and ``hpo dashboard`` (which serves it).

Folder, first found: ``--artifacts DIR``, ``$HPO_ARTIFACT_DIR``, ``artifacts/`` beside a
SQLite file (``sqlite:///storage/x.db`` -> ``storage/artifacts/``), else
``storage/artifacts/`` in the current directory (the folder the default SQLite storage uses),
for PostgreSQL and other servers.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import optuna
from optuna.artifacts import ArtifactMeta, FileSystemArtifactStore, upload_artifact

from hpo.errors import UsageError
from hpo.storage.rdb import make_storage
from hpo.storage.urls import sqlite_path

__all__ = [
    "DEFAULT_DIR",
    "ENV_VAR",
    "artifact_dir",
    "check_artifact_dir",
    "open_artifact_store",
    "replace_study_file",
    "study_artifacts",
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


def study_artifacts(study: optuna.Study, url: str) -> list[ArtifactMeta]:
    """The metadata of the study's artifacts (:func:`optuna.artifacts.get_all_artifact_meta`).

    optuna-dashboard deletes an artifact by overwriting its metadata with JSON ``null``,
    which that function cannot read (TypeError); then the study's system attributes are read
    from the storage at ``url`` and the deleted entries skipped.
    """
    try:
        return optuna.artifacts.get_all_artifact_meta(study)
    except TypeError:
        storage = make_storage(url)
        attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))
        metas = [json.loads(v) for k, v in attrs.items() if k.startswith("artifacts:")]
        return [ArtifactMeta(m["artifact_id"], m["filename"], m["mimetype"], m["encoding"])
                for m in metas if m is not None]


def replace_study_file(
    store: FileSystemArtifactStore, study: optuna.Study, path: str | os.PathLike, url: str,
    *, mimetype: str | None = None,
) -> tuple[str, bool]:
    """Store ``path`` as the study's artifact of that file name: the content of an existing
    one (each, if older runs left several) is overwritten in place through the store's
    ``write``, so its id and the number of artifacts stay; else it is uploaded.

    Returns:
        ``(artifact_id, replaced)``.
    """
    name = Path(path).name
    same = [m for m in study_artifacts(study, url)
            if m.filename == name and (mimetype is None or m.mimetype == mimetype)]
    if not same:
        return upload_study_file(store, study, path, mimetype=mimetype), False
    for meta in same:
        with open(path, "rb") as body:
            store.write(meta.artifact_id, body)
    return same[0].artifact_id, True
