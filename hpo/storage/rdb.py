"""Storage URL -> Optuna RDB storage that survives several workers and crashed workers.

* SQLite (the default, one machine): the parent folder is created, the file is switched to
  WAL once (the mode persists in the file, so readers such as optuna-dashboard never block
  the writers and the writers never block them), and every connection waits up to 60 s for
  the write lock instead of failing at once with "database is locked" (Python's default
  is 5 s). pysqlite opens its transaction at the first write, so the busy wait covers every
  write that Optuna makes. Commits are synced at WAL checkpoints, not each one
  (``synchronous=NORMAL``: consistent after any crash; :mod:`hpo.storage.sqlite_file`).
* PostgreSQL and other servers (several machines): a small connection pool per worker
  (at most 4 connections: ``pool_size=2, max_overflow=2``), ``pool_pre_ping`` so a
  restarted server or a dropped connection is not an error, and TCP timeouts so a vanished
  server fails a query within a minute instead of hanging (the workers retry it:
  :mod:`hpo.storage.retry`).
* Heartbeats: a trial whose worker died is marked failed after the grace period and
  re-queued with the same parameters; so is one whose worker died before its first beat.
  The failure and the copy are one transaction (:mod:`hpo.study.requeue`).
* Trial state changes are atomic on SQLite too (Optuna's ``FOR UPDATE`` is a no-op there):
  of two processes that change a trial's state at once (two workers popping the same
  enqueued trial, a worker telling its trial while another's stale check fails it), exactly
  one wins and the other is refused (:class:`_RDBStorage`).
* A read-only or full location is a one-line StorageError that says so.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.trial import TrialState
from sqlalchemy.engine import URL, make_url

from hpo.errors import StorageError, UsageError
from hpo.storage.sqlite_file import SQLITE_BUSY_TIMEOUT_S, prepare_sqlite, sync_normal_in_wal
from hpo.storage.trial_reads import PlainSqlTrialReads
from hpo.storage.trial_writes import PlainSqlTrialWrites
from hpo.study.requeue import AtomicRequeue

if TYPE_CHECKING:
    from hpo.config.study import HeartbeatConfig

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
_PASSWORD_KEYS = ("password", "passwd", "pass", "pwd")
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
    """The URL with its password replaced by ``***`` (safe to print and to store), also a
    ``?password=`` query argument and the password of a URL too malformed to parse."""
    try:
        parsed = make_url(url)
        secret = {k: "***" for k in parsed.query if k.lower() in _PASSWORD_KEYS}
        if parsed.password is None and not secret:
            return str(url)  # as given: rendering would escape e.g. '@' in a SQLite path
        text = parsed.update_query_dict(secret).render_as_string(hide_password=True)
        return text.replace("=%2A%2A%2A", "=***")
    except Exception:  # noqa: BLE001 - an unparsable URL must still never leak a password
        text = str(url)
        at = text.rfind("@")  # the last one: a password may hold '@' too
        start = text.rfind("//", 0, at) + 2 if "//" in text[:at] else 0
        user, colon, _ = text[start:at].partition(":")
        masked = f"{text[:start]}{user}:***@{text[at + 1:]}" if at >= 0 and colon else text
        return re.sub(r"(?i)(pass(?:word|wd)?|pwd)=[^&]*", r"\1=***", masked)


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

    try:
        storage = _open_rdb(url, engine_kwargs, heartbeat)
        if backend == "sqlite":
            sync_normal_in_wal(storage.engine)
    except ImportError as exc:
        # Optuna re-raises the driver's ModuleNotFoundError under a generic message.
        cause = exc.__cause__ or exc.__context__
        module = getattr(cause, "name", None) or getattr(exc, "name", None) or "?"
        if backend == "postgresql" and importlib.util.find_spec("psycopg2") is not None:
            # SQLAlchemy 2.1 reads postgresql:// as psycopg (3); psycopg2 is here
            fix = "write the URL as postgresql+psycopg2://..., or pip install psycopg"
        elif backend == "postgresql":
            fix = "pip install psycopg2-binary and write the URL as postgresql+psycopg2://..."
        else:
            fix = f"install the Python package that provides the module {module!r}"
        raise UsageError(
            f"storage {mask_url(url)}: the database driver for {parsed.drivername!r} is not "
            f"installed (no module {module!r}); fix: {fix}."
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
                return _RDBStorage(
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


# PlainSqlTrialReads/Writes: a worker reads the study's trials about ten times per trial and
# writes each parameter, intermediate value and heartbeat: done without the ORM, with the
# same checks and results, for a fraction of the CPU (hpo.storage.trial_reads/_writes).
# AtomicRequeue: a trial is failed and its copy queued in one transaction.
class _RDBStorage(
    PlainSqlTrialReads, PlainSqlTrialWrites, AtomicRequeue, optuna.storages.RDBStorage
):
    """Optuna's RDBStorage with atomic trial state changes on SQLite and a stale-trial
    check that also catches a trial that never beat.

    State changes: Optuna reads a trial's state with ``SELECT ... FOR UPDATE``, checks it and
    writes the new one. SQLite ignores ``FOR UPDATE`` and pysqlite opens the transaction only
    at the write, so two processes can both read RUNNING (or WAITING) and both "win": two
    workers pop the same enqueued baseline, or a worker's interrupted (or finished) trial is
    failed at the same moment by another worker's stale check, and both re-queue it (or it
    ends COMPLETE and re-queued). Either way a baseline seed finishes twice. Here SQLite's
    write lock is taken before Optuna reads, so its check and its write are one step.

    Never beat: a worker killed between creating (or dequeuing) its trial and its first
    heartbeat, a few milliseconds, leaves a RUNNING trial without a heartbeat row. Optuna's
    check skips such a trial, so it would hold a slot of the budget forever and the study
    would never end. It is stale too once it started more than the grace period ago.
    """

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Optuna's state change (same checks, same result), atomic on SQLite too.

        Raises:
            UpdateFinishedTrialError: the trial is finished, maybe by another process just
                now; this call changed nothing.
        """
        if self.engine.dialect.name != "sqlite":  # SELECT ... FOR UPDATE locks the row
            return super().set_trial_state_values(trial_id, state, values)
        from optuna.storages._rdb import models

        # Optuna's method runs in this thread's session (a scoped session), so a write that
        # changes nothing, made in it first, holds SQLite's write lock until Optuna's commit
        # or rollback, which also closes the session.
        table = models.TrialModel.__table__
        session = self.scoped_session()
        try:
            session.execute(
                sqlalchemy.update(table)
                .where(table.c.trial_id == trial_id)
                .values(state=table.c.state)
            )
            return super().set_trial_state_values(trial_id, state, values)
        except BaseException:
            session.rollback()  # a no-op once Optuna's method has ended the transaction
            session.close()
            raise

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        stale = super()._get_stale_trial_ids(study_id)
        assert self.heartbeat_interval is not None  # only called with heartbeats on
        grace = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        # The start time is written with the worker's clock, not the database's, so it is
        # compared with this machine's: naive UTC since Optuna 5, naive local time before.
        started = getattr(models.TrialModel, "_datetime_start_utc", None)
        if started is not None:
            now = datetime.now(timezone.utc).replace(tzinfo=None)
        else:  # pragma: no cover - optuna < 5
            started, now = models.TrialModel.datetime_start, datetime.now()
        cutoff = now - timedelta(seconds=grace)
        with _create_scoped_session(self.scoped_session, True) as session:
            rows = (
                session.query(models.TrialModel.trial_id)
                .filter(models.TrialModel.study_id == study_id)
                .filter(models.TrialModel.state == TrialState.RUNNING)
                .filter(started < cutoff)
                .filter(~models.TrialModel.heartbeats.any())
                .all()
            )
        orphans = [row.trial_id for row in rows if row.trial_id not in stale]
        if orphans:
            logger.warning("trial ids %s are RUNNING without any heartbeat since more than "
                           "%s s (their worker died before its first beat); failing them",
                           orphans, grace)
        return stale + orphans


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
    except sqlalchemy.exc.NoSuchModuleError as exc:  # a subclass of ArgumentError: first
        raise UsageError(
            f"storage: unknown database kind in URL (got {mask_url(url)!r}); allowed: "
            f"sqlite, postgresql, mysql (e.g. {_EXAMPLES}); fix: correct the scheme."
        ) from exc
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:  # ValueError: a bad port
        raise UsageError(
            f"storage: not a database URL (got {mask_url(url)!r}); allowed: {_EXAMPLES}; "
            "fix: write it as DIALECT[+DRIVER]://..."
        ) from exc
    return parsed


def _one_line(exc: BaseException, url: URL) -> str:
    """The driver's own message, first line only, any password removed."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    if url.password:
        text = text.replace(str(url.password), "***")
    return text[:300]
