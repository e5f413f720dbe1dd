"""Storage URL -> Optuna's own RDBStorage, set up for several workers and crashed workers.

SQLite: WAL, a 60 s wait for the write lock, ``BEGIN IMMEDIATE`` transactions
(:mod:`hpo.storage.sqlite_file`). PostgreSQL and other servers: a small pool with
``pool_pre_ping`` and TCP timeouts. Optuna's heartbeats and a caller's stale-trial
callback. A malformed URL is a one-line UsageError, a read-only or full location a
one-line StorageError. Public Optuna and SQLAlchemy APIs only.
See docs/design.md#opening-a-storage-for-many-workers.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.trial import FrozenTrial
from sqlalchemy.engine import URL

from hpo.errors import StorageError, UsageError, one_line
from hpo.storage.sqlite_file import SQLITE_BUSY_TIMEOUT_S, prepare_sqlite, tune_sqlite_engine
from hpo.storage.urls import engine_url, mask_url, parse_storage_url

if TYPE_CHECKING:
    from hpo.config.study import HeartbeatConfig

__all__ = [
    "SQLITE_BUSY_TIMEOUT_S",
    "StaleTrialCallback",
    "grace_period_s",
    "is_finished_trial_error",
    "make_storage",
]

logger = logging.getLogger(__name__)

#: ``callback(study, failed_trial)``: run by ``optuna.storages.fail_stale_trials`` for each
#: trial it failed.
StaleTrialCallback = Callable[[optuna.Study, FrozenTrial], None]

_OPEN_ERRORS = (
    sqlalchemy.exc.SQLAlchemyError,
    optuna.exceptions.StorageInternalError,
    RuntimeError,  # the schema was written by a newer/older Optuna
    OSError,
)
_CREATE_ATTEMPTS = 5
_CREATE_RACE = re.compile(r"already exists|UNIQUE constraint failed|duplicate key", re.I)


def make_storage(
    url: str,
    heartbeat: HeartbeatConfig | None = None,
    *,
    stale_trial_callback: StaleTrialCallback | None = None,
) -> optuna.storages.RDBStorage:
    """Open (and create the tables of) the storage at ``url``.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://...``; a
            ``postgresql://`` or ``postgres://`` URL opens with psycopg2).
        heartbeat: worker liveness settings; ``None`` for a storage that only reads or
            creates studies (no trial runs through it).
        stale_trial_callback: run for each trial that ``optuna.storages.fail_stale_trials``
            fails (with ``heartbeat`` only).

    Raises:
        UsageError: the URL is malformed or names a database kind/driver that is not
            installed (nothing is written then).
        StorageError: the database cannot be reached, created or read.
    """
    parsed = parse_storage_url(url)
    backend = parsed.get_backend_name()
    engine_kwargs: dict = {}
    if backend == "sqlite":
        prepare_sqlite(parsed)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif backend == "postgresql":
        engine_kwargs.update(pool_size=2, max_overflow=2, pool_pre_ping=True)
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
        if parsed.get_driver_name() == "psycopg2":
            # A server that vanished without closing the connection (a network partition,
            # a crashed host) would leave a query waiting for minutes; libpq's TCP timeouts
            # turn that into an error within a minute, which the workers retry.
            engine_kwargs["connect_args"].update(
                keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
                tcp_user_timeout=60_000,
            )
    else:
        engine_kwargs["pool_pre_ping"] = True

    kwargs = _heartbeat_kwargs(heartbeat, stale_trial_callback)
    try:
        storage = _open_rdb(engine_url(url), engine_kwargs, kwargs)
        if backend == "sqlite":
            tune_sqlite_engine(storage.engine)
    except ImportError as exc:
        # Optuna re-raises the driver's ModuleNotFoundError under a generic message.
        cause = exc.__cause__ or exc.__context__
        module = getattr(cause, "name", None) or getattr(exc, "name", None) or "?"
        if backend == "postgresql" and importlib.util.find_spec("psycopg2") is not None:
            # an explicit postgresql+psycopg:// (psycopg 3); psycopg2 is the one installed
            fix = "write the URL as postgresql://... (psycopg2), or pip install psycopg"
        elif backend == "postgresql":
            fix = "pip install psycopg2-binary (the driver postgresql:// opens with)"
        else:
            fix = f"install the Python package that provides the module {module!r}"
        raise UsageError(
            f"storage {mask_url(url)}: the database driver for {parsed.drivername!r} is not "
            f"installed (no module {module!r}); fix: {fix}."
        ) from exc
    except _OPEN_ERRORS as exc:
        raise StorageError(
            f"cannot open storage {mask_url(url)}: {_driver_message(exc, parsed)}; fix: check "
            "that the database server is running and reachable and that the URL, user and "
            "database are right (optuna schema too old: optuna storage upgrade --storage URL)."
        ) from exc
    logger.debug("opened storage %s as %s", mask_url(url), mask_url(engine_url(url)))
    return storage


def is_finished_trial_error(exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna refusing a write to a trial that is already finished (by
    another process, e.g. a stale check): ``optuna.exceptions.UpdateFinishedTrialError`` (a
    RuntimeError) in Optuna 5.0, a plain RuntimeError with this message in Optuna 4.0."""
    cls = getattr(optuna.exceptions, "UpdateFinishedTrialError", None)
    if cls is not None and isinstance(exc, cls):
        return True
    return isinstance(exc, RuntimeError) and "has already finished and can not be updated" in (
        str(exc)
    )


def grace_period_s(storage: optuna.storages.RDBStorage) -> float | None:
    """Seconds without a heartbeat after which a running trial is stale (Optuna's default:
    two intervals), or None without heartbeats."""
    interval = storage.get_heartbeat_interval()
    if interval is None:
        return None
    return float(storage.grace_period if storage.grace_period is not None else 2 * interval)


# ----------------------------------------------------------------------------------
def _open_rdb(url: str, engine_kwargs: dict, kwargs: dict) -> optuna.storages.RDBStorage:
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                # Heartbeats are flagged experimental; we rely on them on purpose, and the
                # warning would repeat in every worker.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=dict(engine_kwargs), **kwargs
                )
        except sqlalchemy.exc.DatabaseError as exc:
            # Workers started at once on a new database race to create Optuna's tables
            # (check, then CREATE): the loser finds them made and just has to retry.
            if attempt + 1 == _CREATE_ATTEMPTS or not _CREATE_RACE.search(str(exc)):
                raise
            logger.debug("storage tables created concurrently; retrying (%s)", exc)
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _heartbeat_kwargs(
    heartbeat: HeartbeatConfig | None, callback: StaleTrialCallback | None
) -> dict:
    """RDBStorage arguments: a trial whose worker stopped beating for ``grace`` seconds is
    failed by ``optuna.storages.fail_stale_trials`` (which a worker calls), then
    ``callback`` runs for it."""
    if heartbeat is None:
        return {}
    kwargs: dict = {"heartbeat_interval": heartbeat.interval, "grace_period": heartbeat.grace}
    if callback is not None:
        # Optuna 5.0 calls it heartbeat_stale_trial_callback (failed_trial_callback stays
        # there, deprecated); Optuna 4.0 knows only failed_trial_callback.
        names = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
        name = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in names
                else "failed_trial_callback")
        kwargs[name] = callback
    return kwargs


def _driver_message(exc: BaseException, url: URL) -> str:
    """The driver's own message, on one line, any password removed."""
    text = one_line(getattr(exc, "orig", None) or exc)
    if url.password:
        text = text.replace(str(url.password), "***")
    return text[:300]
