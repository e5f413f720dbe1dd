"""The project folder and its one default database, ``storage/hpo.db``.

The *project folder* is the nearest folder, from the current directory upward, that holds a
``storage/`` or a ``study_configs/`` folder (the way git finds its repository from any
subfolder); where none does, the current directory itself. Every study created there
without ``--storage``, ``$HPO_STORAGE`` or a ``storage:`` in its file goes into one SQLite
database, ``<project>/storage/hpo.db``, so ``hpo status``, ``hpo export --all`` and
``hpo dashboard`` see all of them from anywhere in the project.

Earlier versions wrote one database per study (``storage/<study>.db``);
:func:`other_databases` finds those so ``hpo status`` can say how to open them.
Pure path functions: nothing is created here.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DEFAULT_DATABASE",
    "PROJECT_MARKERS",
    "STORAGE_FOLDER",
    "default_database",
    "is_project_folder",
    "other_databases",
    "project_folder",
]

STORAGE_FOLDER = "storage"
DEFAULT_DATABASE = "hpo.db"
#: A folder holding one of these (as a folder) is a project folder.
PROJECT_MARKERS = (STORAGE_FOLDER, "study_configs")
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
    return any((Path(folder) / marker).is_dir() for marker in PROJECT_MARKERS)


def default_database(start: str | Path | None = None) -> Path:
    """``<project folder>/storage/hpo.db`` (absolute; it may not exist yet)."""
    return project_folder(start) / STORAGE_FOLDER / DEFAULT_DATABASE


def other_databases(start: str | Path | None = None, *, besides: str | Path | None = None
                    ) -> list[Path]:
    """SQLite files under the project's ``storage/`` (at any depth) other than ``besides``
    (default: ``storage/hpo.db``), sorted: the one-file-per-study databases of earlier
    versions, or copies a user put there."""
    folder = project_folder(start) / STORAGE_FOLDER
    if not folder.is_dir():
        return []
    skip = Path(besides if besides is not None else folder / DEFAULT_DATABASE).absolute()
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix in _SQLITE_SUFFIXES and path.is_file() and path.absolute() != skip:
            found.append(path)
    return found
