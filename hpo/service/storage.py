"""Storage URL -> Optuna RDB storage that survives several workers and crashed workers.

* SQLite (the default, one machine): the parent folder is created, the file is switched to
  WAL once (the mode persists in the file, so readers such as optuna-dashboard never block
  the writers and the writers never block them), and every connection waits up to 60 s for
  the write lock instead of failing at once with "database is locked" (Python's default
  is 5 s). pysqlite opens its transaction at the first write, so the busy wait covers every
  write that Optuna makes.
* PostgreSQL and other servers (several machines): a small connection pool per worker and
  ``pool_pre_ping`` so a restarted server or a dropped connection is not an error.
* Heartbeats: a trial whose worker died is marked failed after the grace period and
  re-queued with the same parameters.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.engine import URL, make_url

from hpo.errors import StorageError, UsageError

if TYPE_CHECKING:
    from hpo.config import HeartbeatConfig

__all__ = [
    "SQLITE_BUSY_TIMEOUT_S",
    "default_storage_url",
    "make_storage",
    "mask_url",
    "parse_storage_url",
    "resolve_storage_url",
]

logger = logging.getLogger(__name__)

ENV_VAR = "HPO_STORAGE"
_OPEN_ERRORS = (
    sqlalchemy.exc.SQLAlchemyError,
    optuna.exceptions.StorageInternalError,
    RuntimeError,  # the schema was written by a newer/older Optuna
    OSError,
)
_CREATE_ATTEMPTS = 5
_CREATE_RACE = re.compile(r"already exists|UNIQUE constraint failed|duplicate key", re.I)
SQLITE_BUSY_TIMEOUT_S = 60
_EXAMPLES = "sqlite:///storage/NAME.db, postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB"


def default_storage_url(name: str) -> str:
    """``sqlite:///storage/<name>.db``: a file under ``storage/`` in the current directory."""
    return f"sqlite:///storage/{name}.db"


def resolve_storage_url(
    config_url: str | None, flag: str | None, *, name: str | None = None
) -> str:
    """Pick the storage URL: the ``--storage`` flag, else ``$HPO_STORAGE``, else the study
    file's ``storage:``, else ``sqlite:///storage/<name>.db``.

    Raises:
        UsageError: nothing is given and there is no study name to build the default from.
    """
    for url in (flag, os.environ.get(ENV_VAR), config_url):
        if url:
            return url
    if name:
        return default_storage_url(name)
    raise UsageError(
        "no storage given (got no --storage flag, no $HPO_STORAGE and no study file); "
        f"allowed: a SQLAlchemy URL such as {_EXAMPLES}; fix: pass --storage URL or set "
        "HPO_STORAGE."
    )


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe to print and to store)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL must still never leak a password
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def make_storage(url: str, heartbeat: HeartbeatConfig | None = None) -> optuna.storages.RDBStorage:
    """Open (and create the tables of) the storage at ``url``.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg2://...``).
        heartbeat: worker liveness settings; ``None`` for a storage that only reads or
            creates studies (no trial runs through it).

    Raises:
        UsageError: the URL is malformed or names a database kind/driver that is not
            installed.
        StorageError: the database cannot be reached, created or read (password masked).
    """
    parsed = parse_storage_url(url)
    backend = parsed.get_backend_name()
    engine_kwargs: dict = {}
    if backend == "sqlite":
        _prepare_sqlite(parsed)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif backend == "postgresql":
        engine_kwargs.update(pool_size=2, max_overflow=2, pool_pre_ping=True)
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    else:
        engine_kwargs["pool_pre_ping"] = True

    try:
        storage = _open_rdb(url, engine_kwargs, heartbeat)
    except ImportError as exc:
        raise UsageError(
            f"storage {mask_url(url)}: the database driver for {parsed.drivername!r} is not "
            f"installed ({_one_line(exc, parsed)}); fix: install it (PostgreSQL: pip install "
            "psycopg2-binary)."
        ) from exc
    except _OPEN_ERRORS as exc:
        raise StorageError(
            f"cannot open storage {mask_url(url)}: {_one_line(exc, parsed)}; fix: check that "
            "the database server is running and reachable and that the URL, user and "
            "database are right (optuna schema too old: optuna storage upgrade --storage URL)."
        ) from exc
    logger.debug("opened storage %s", mask_url(url))
    return storage


# ----------------------------------------------------------------------------------
def _open_rdb(
    url: str, engine_kwargs: dict, heartbeat: HeartbeatConfig | None
) -> optuna.storages.RDBStorage:
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                # Heartbeats and the retry callback are flagged experimental; we rely on
                # them on purpose, and the warning would repeat in every worker.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=dict(engine_kwargs), **_heartbeat_kwargs(heartbeat)
                )
        except sqlalchemy.exc.DatabaseError as exc:
            # Workers started at once on a new database race to create Optuna's tables
            # (check, then CREATE): the loser finds them made and just has to retry.
            if attempt + 1 == _CREATE_ATTEMPTS or not _CREATE_RACE.search(str(exc)):
                raise
            logger.debug("storage tables created concurrently; retrying (%s)", exc)
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _heartbeat_kwargs(heartbeat: HeartbeatConfig | None) -> dict:
    """RDBStorage arguments: a trial whose worker stopped beating for ``grace`` seconds is
    failed (by the next worker that starts a trial) and re-queued with the same params."""
    if heartbeat is None:
        return {}
    retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry_cls is not None:
        callback_kwarg = "heartbeat_stale_trial_callback"
    else:  # optuna < 4.9 names it differently
        retry_cls = optuna.storages.RetryFailedTrialCallback
        callback_kwarg = "failed_trial_callback"
    return {
        "heartbeat_interval": heartbeat.interval,
        "grace_period": heartbeat.grace,
        callback_kwarg: retry_cls(max_retry=heartbeat.max_retry),
    }


def parse_storage_url(url: str) -> URL:
    """Parse a storage URL, checking that SQLAlchemy knows its database kind.

    Raises:
        UsageError: the URL is malformed or its scheme is unknown.
    """
    try:
        parsed = make_url(url)
        parsed.get_dialect()  # raises for an unknown scheme such as "sqlit://"
    except sqlalchemy.exc.ArgumentError as exc:
        raise UsageError(
            f"storage: not a database URL (got {mask_url(url)!r}); allowed: {_EXAMPLES}; "
            "fix: write it as DIALECT[+DRIVER]://..."
        ) from exc
    except sqlalchemy.exc.NoSuchModuleError as exc:
        raise UsageError(
            f"storage: unknown database kind in URL (got {mask_url(url)!r}); allowed: "
            f"sqlite, postgresql, mysql (e.g. {_EXAMPLES}); fix: correct the scheme."
        ) from exc
    return parsed


def _prepare_sqlite(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return  # in-memory: nothing on disk to prepare
    path = Path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # WAL is a property of the database file: setting it once covers every later
        # connection, from every worker and from the dashboard.
        with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as con:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        con.close()
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(
            f"cannot open SQLite storage {str(path)!r}: {exc}; fix: choose a writable path "
            "on a local disk (SQLite locking does not work on network file systems)."
        ) from exc
    if mode.lower() != "wal":
        logger.warning("SQLite storage %s stays in journal mode %s, not WAL", path, mode)


def _one_line(exc: BaseException, url: URL) -> str:
    """The driver's own message, first line only, any password removed."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    if url.password:
        text = text.replace(str(url.password), "***")
    return text[:300]
