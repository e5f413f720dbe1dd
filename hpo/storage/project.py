"""The project folder and its one default database, ``storage/hpo.db``.

The project folder is the nearest folder upward that holds ``storage/`` or
``study_configs/`` (else the current directory); every study created without a storage
URL goes into ``<project>/storage/hpo.db``. :func:`other_databases` finds the per-study
databases of earlier versions. Pure path functions: nothing is created here.
See docs/design.md#the-project-folder-and-its-default-database.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "STORAGE_FOLDER",
    "default_database",
    "is_project_folder",
    "other_databases",
    "project_folder",
]

STORAGE_FOLDER = "storage"
_DEFAULT_DATABASE = "hpo.db"
#: A folder holding one of these (as a folder) is a project folder.
_PROJECT_MARKERS = (STORAGE_FOLDER, "study_configs")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def project_folder(start: str | Path | None = None) -> Path:
    """The nearest folder from ``start`` (default: the current directory) upward that holds
    ``storage/`` or ``study_configs/``; ``start`` itself (absolute) when none does."""
    here = Path.cwd() if start is None else Path(start).absolute()
    for folder in (here, *here.parents):
        if is_project_folder(folder):
            return folder
    return here


def is_project_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a ``storage/`` or ``study_configs/`` folder."""
    return any((Path(folder) / marker).is_dir() for marker in _PROJECT_MARKERS)


def default_database(start: str | Path | None = None) -> Path:
    """``<project folder>/storage/hpo.db`` (absolute; it may not exist yet)."""
    return project_folder(start) / STORAGE_FOLDER / _DEFAULT_DATABASE


def other_databases(start: str | Path | None = None, *, besides: str | Path | None = None
                    ) -> list[Path]:
    """SQLite files under the project's ``storage/`` (at any depth) other than ``besides``
    (default: ``storage/hpo.db``), sorted: the one-file-per-study databases of earlier
    versions, or copies a user put there."""
    folder = project_folder(start) / STORAGE_FOLDER
    if not folder.is_dir():
        return []
    skip = Path(besides if besides is not None else folder / _DEFAULT_DATABASE).absolute()
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix in _SQLITE_SUFFIXES and path.is_file() and path.absolute() != skip:
            found.append(path)
    return found
