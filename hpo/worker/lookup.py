"""Which storage and study a command means: databases that exist, and where else to look.

A command that only reads (``status``, ``export``, ``compare``, ``worker``, ``dashboard``)
must never create an empty SQLite file by mistake; when the database or the study is not
there, the one-line error names the project's other databases (the one-file-per-study
databases of earlier versions, :func:`hpo.storage.project.other_databases`). A stored study's
model is checked here too (:func:`check_study_models`) before a worker takes a trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from hpo.config.models import check_models
from hpo.config.yamlfile import Checker
from hpo.errors import ConfigError, StudyNotFoundError, one_line
from hpo.storage.project import (
    STORAGE_FOLDER,
    is_project_folder,
    other_databases,
    project_folder,
)
from hpo.storage.rdb import make_storage
from hpo.storage.urls import is_default_storage, mask_url, parse_storage_url, sqlite_path
from hpo.study.create import load_study
from hpo.worker.progress import format_status, snapshot

if TYPE_CHECKING:
    from hpo.config.study import StudyConfig

__all__ = [
    "check_study_models",
    "load_existing_study",
    "open_existing_storage",
    "storage_overview",
]


def open_existing_storage(url: str, *, study: str | None = None) -> optuna.storages.RDBStorage:
    """Open a storage for reading without creating an empty SQLite file by mistake.

    Raises:
        StudyNotFoundError: ``url`` names a SQLite file that does not exist (the message
            names the project's other databases, where ``study`` may be).
    """
    path = _missing_sqlite_file(url)
    if path is not None:
        where = (f"this project has no studies yet ({mask_url(url)} does not exist; "
                 f"{_which_project()})" if is_default_storage(url) else
                 f"no study storage at {mask_url(url)} (file {str(path)!r} does not exist)")
        raise StudyNotFoundError(
            f"{where}; fix: create the study with hpo create CONFIG (or hpo run CONFIG), "
            "run the command from the project folder, or pass --storage URL (or set "
            f"HPO_STORAGE){_older_databases_hint(url, study)}."
        )
    return make_storage(url)


def load_existing_study(name: str, url: str) -> tuple[optuna.Study, Any]:
    """:func:`hpo.study.create.load_study` for a storage that must exist already; a study
    not found there names the project's other databases that may hold it.

    Raises:
        StudyNotFoundError: no such storage or study.
        StorageError: the storage cannot be reached.
    """
    open_existing_storage(url, study=name).engine.dispose()
    try:
        return load_study(name, url)
    except StudyNotFoundError as exc:
        hint = _older_databases_hint(url, name)
        if not hint:
            raise
        raise StudyNotFoundError(f"{str(exc).rstrip('.')}{hint}.") from exc


def check_study_models(cfg: StudyConfig) -> None:
    """Build the stored study's models once on this machine, as loading its file does
    (:func:`hpo.config.models.check_models`): a model path that does not import here, or a
    model that cannot be built, is one line before a worker takes a trial, not a failed trial.

    Raises:
        ConfigError: ``study NAME: train.model: ...`` (or the searched choice), with the fix.
        ModelAuditError: the model cannot carry the configured derivatives.
    """
    checker = Checker(f"study {cfg.name}")
    # Valid where the study was made: what fails here is the model (e.g. its import path).
    searched = cfg.search_space.get("model")
    for i, name in enumerate(getattr(searched, "choices", [None])):
        try:
            cfg.train_spec({} if name is None else {"model": name})
        except ConfigError as exc:
            key = "train.model" if name is None else f"search_space.model.choices[{i}]"
            got = cfg.fixed.get("model") if name is None else name
            raise checker.error(key, one_line(exc), got) from exc
    check_models(checker, cfg.fixed, cfg.search_space)


def storage_overview(url: str) -> list[str]:
    """The lines of ``hpo status`` without a study: every study in the storage, then the
    other databases under the project's ``storage/`` folder and how to open them. The
    project's default database not existing yet is no error (no study was created)."""
    lines = []
    if is_default_storage(url) and _missing_sqlite_file(url) is not None:
        lines.append(f"storage {mask_url(url)}: no studies yet (the file does not exist; "
                     "hpo create CONFIG or hpo run CONFIG writes it)")
    else:
        storage = open_existing_storage(url)
        try:
            names = [s.study_name for s in storage.get_all_studies()]
            lines.append(f"storage {mask_url(url)}: {len(names)} "
                         f"stud{'y' if len(names) == 1 else 'ies'}")
            for name in names:
                lines += format_status(snapshot(optuna.load_study(study_name=name,
                                                                  storage=storage)))
        finally:
            storage.engine.dispose()
    others = _other_databases(url)
    if others:
        lines.append(f"other databases under {STORAGE_FOLDER}/ (not shown above; e.g. one "
                     "file per study from an earlier version), open one with --storage:")
        lines += [f"  hpo status --storage {other}" for other in others]
    return lines


def _which_project() -> str:
    folder = project_folder()
    if is_project_folder(folder):
        return (f"the project folder is {str(folder)!r}, the nearest one upward holding "
                "storage/ or study_configs/")
    return (f"no folder from here upward holds storage/ or study_configs/, so the project "
            f"folder is the current one, {str(folder)!r}")


def _missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite ``url`` when it does not exist, else None."""
    parsed = parse_storage_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and ":memory:" not in database:
        # a SQLite URI (sqlite:///file:PATH?mode=ro&uri=true) names the file after "file:"
        path = Path(database.removeprefix("file:"))
        if not path.exists():
            return path
    return None


def _other_databases(url: str) -> list[str]:
    """``sqlite:///...`` URLs of the SQLite files under the project's ``storage/`` other
    than ``url``'s (relative to the current directory when they are under it)."""
    besides = sqlite_path(url)
    found = other_databases(besides=besides) if besides else other_databases()
    here = Path.cwd()
    urls = []
    for path in found:
        shown = path.relative_to(here) if path.is_relative_to(here) else path
        urls.append(f"sqlite:///{shown}")
    return urls


def _older_databases_hint(url: str, study: str | None) -> str:
    """``; it may be in ...``: the project's other databases, the study's own file first
    (storage/<study>.db, as earlier versions wrote it)."""
    if sqlite_path(url) is None and not is_default_storage(url):
        return ""  # a server: the project's files are not where the user looks
    others = _other_databases(url)
    own = [u for u in others if study and Path(u).stem == study]
    if own:
        return f"; it may be in {own[0]}: add --storage {own[0]}"
    if others:
        listed = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        return f"; other databases under {STORAGE_FOLDER}/: {listed} (open one with --storage)"
    return ""
