"""The SQLite file under a study: WAL mode, commit syncing, and errors a user can fix.

Set up once per storage by :func:`hpo.storage.rdb.make_storage`: the folder is made,
the file is switched to write-ahead logging (the
switch is retried while another process holds a brand-new file), every transaction takes
the write lock at its start (``BEGIN IMMEDIATE``), and connections to a WAL file commit with
``synchronous=NORMAL``. A read-only or full location is a one-line
StorageError that says what to do.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import URL

from hpo.errors import StorageError
from hpo.storage.retry import FULL, READ_ONLY, sqlite_disk_fault

__all__ = ["SQLITE_BUSY_TIMEOUT_S", "prepare_sqlite", "tune_sqlite_engine"]

logger = logging.getLogger(__name__)

# How long a connection waits for SQLite's write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 60


def prepare_sqlite(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return  # in-memory: nothing on disk to prepare
    path = Path(database)
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:  # e.g. a file named "storage" where the folder should be
        raise StorageError(
            f"SQLite storage {str(path)!r} cannot be made: {str(blocker)!r} is a file, not a "
            "folder; nothing was written; fix: move or rename that file, or pass --storage "
            "URL (or set HPO_STORAGE)."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = _set_wal(path)
    except (OSError, sqlite3.Error) as exc:
        fault = sqlite_disk_fault(f"sqlite:///{path}")
        if fault == READ_ONLY:
            raise StorageError(
                f"SQLite storage {str(path)!r} is in a read-only folder ({exc}); nothing was "
                "changed; fix: copy the database to a writable folder and pass that with "
                "--storage, or make the folder writable (remount it read-write)."
            ) from exc
        if fault == FULL:
            raise StorageError(
                f"SQLite storage {str(path)!r} is on a full disk ({exc}); nothing was "
                "changed; fix: free space on that disk (or move the database) and start again."
            ) from exc
        raise StorageError(
            f"cannot open SQLite storage {str(path)!r}: {exc}; fix: choose a writable path "
            "on a local disk (SQLite locking does not work on network file systems)."
        ) from exc
    if mode.lower() != "wal":
        logger.warning("SQLite storage %s stays in journal mode %s, not WAL", path, mode)


def _set_wal(path: Path) -> str:
    """Put the SQLite file in WAL mode; return the journal mode it ends in.

    WAL is a property of the database file: setting it once covers every later connection,
    from every worker and from the dashboard. Switching needs the file to itself, and
    SQLite answers "database is locked" at once, without its busy wait, while another
    process (a second `hpo create`, a worker starting) holds it: retried here for up to the
    busy timeout. A file already in WAL mode is left alone.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        con = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            mode = str(con.execute("PRAGMA journal_mode").fetchone()[0])
            if mode.lower() != "wal":
                mode = str(con.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            return mode
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
        finally:
            con.close()
        time.sleep(0.05)


def tune_sqlite_engine(engine: sqlalchemy.engine.Engine) -> None:
    """Every transaction takes SQLite's write lock first; WAL files commit with
    ``synchronous=NORMAL``.

    ``BEGIN IMMEDIATE`` (SQLAlchemy's documented pysqlite recipe) makes Optuna's
    read-check-write of a trial's state one step, so two workers cannot pop the same trial;
    ``synchronous=NORMAL`` syncs the WAL at checkpoints only (a crash loses nothing; a power
    cut only the last commits). A file in another journal mode keeps FULL.
    See docs/design.md#sqlite-transactions-begin-immediate-and-synchronous-normal.
    """
    if engine.url.database in (None, "", ":memory:") or str(engine.url.database).startswith(
        "file:"
    ):
        return  # in memory: one connection, and disposing the pool would drop the data

    def on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN of its own
        cursor = dbapi_connection.cursor()
        try:
            (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() == "wal":
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    def on_begin(connection: sqlalchemy.engine.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    sqlalchemy.event.listen(engine, "connect", on_connect)
    sqlalchemy.event.listen(engine, "begin", on_begin)
    engine.dispose()  # the connections opened to create the tables reconnect with both
