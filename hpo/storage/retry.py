"""Ride out a storage that is unreachable for a while; name the faults that waiting cannot fix.

:func:`storage_fault` sorts an exception (unreachable, busy, full, read-only, I/O error,
or not a storage fault); :class:`StorageRetry` retries a call with back-off and gives up
with a one-line :class:`~hpo.errors.StorageError` after ``give_up_s`` seconds of failures,
or at once for a fault that waiting cannot fix. See docs/design.md#riding-out-storage-outages.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import sqlalchemy.exc

from hpo.errors import HpoError, StorageError, one_line
from hpo.storage.urls import sqlite_path

__all__ = [
    "BUSY",
    "DEFAULT_GIVE_UP_S",
    "FULL",
    "IO_ERROR",
    "PERMANENT",
    "READ_ONLY",
    "TRANSIENT",
    "UNREACHABLE",
    "StorageRetry",
    "describe",
    "permanent_error",
    "sqlite_disk_fault",
    "storage_fault",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_GIVE_UP_S = 600.0
UNREACHABLE, BUSY = "unreachable", "busy"
FULL, READ_ONLY, IO_ERROR = "full", "read-only", "I/O error"
TRANSIENT = (UNREACHABLE, BUSY)
PERMANENT = (FULL, READ_ONLY, IO_ERROR)

# PostgreSQL SQLSTATE codes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_PG_FULL = {"53100"}  # disk_full
_PG_READ_ONLY = {"25006"}  # read_only_sql_transaction (e.g. a hot standby)
_PG_TRANSIENT_CLASSES = {"08", "57", "53", "40"}  # connection, shutdown, resources, rollback
_FIXES = {
    FULL: "free space on the disk that holds the database (or move it) and start the worker "
          "again: its trial is re-queued",
    READ_ONLY: "make the database file and its folder writable by this user, or pass a "
               "writable --storage",
    IO_ERROR: "check the disk that holds the database (space, permissions, file system) and "
              "start the worker again",
}


def storage_fault(exc: BaseException) -> str | None:
    """The kind of storage fault behind ``exc`` (looking through Optuna's wrapping), or None."""
    for err in _chain(exc):
        if isinstance(err, HpoError):
            return None  # already turned into a one-line error (e.g. by an inner retry)
        if isinstance(err, (sqlalchemy.exc.DisconnectionError, sqlalchemy.exc.TimeoutError)):
            return BUSY if isinstance(err, sqlalchemy.exc.TimeoutError) else UNREACHABLE
        if not isinstance(err, sqlalchemy.exc.DBAPIError):
            continue
        text = " ".join(str(err.orig).lower().split())
        pgcode = getattr(err.orig, "pgcode", None)
        if "disk is full" in text or "no space left" in text or pgcode in _PG_FULL:
            return FULL
        if "readonly database" in text or "read-only file system" in text or (
            pgcode in _PG_READ_ONLY
        ):
            return READ_ONLY
        if "database is locked" in text or "database table is locked" in text:
            return BUSY
        if type(err.orig).__module__.startswith("sqlite3"):
            # SQLite reports programming errors ("no such table") as OperationalError too.
            if "disk i/o error" in text or "unable to open database file" in text:
                return IO_ERROR
            return None
        if err.connection_invalidated:
            return UNREACHABLE
        if isinstance(err, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            # No SQLSTATE: the client lost or never got its connection.
            if pgcode is None or pgcode[:2] in _PG_TRANSIENT_CLASSES:
                return UNREACHABLE if pgcode is None or pgcode[:2] in {"08", "57"} else BUSY
    return None


def describe(exc: BaseException) -> str:
    """The driver's message behind ``exc``, on one line."""
    for err in _chain(exc):
        if isinstance(err, sqlalchemy.exc.DBAPIError):
            return one_line(err.orig, limit=200)
    return one_line(exc, limit=200)


def permanent_error(kind: str, exc: BaseException, where: str) -> StorageError:
    """The one-line error for a fault that retrying cannot fix."""
    if kind == IO_ERROR:  # SQLite says only "disk I/O error": look at the disk itself
        kind = sqlite_disk_fault(where) or kind
    state = {FULL: "is full", READ_ONLY: "is read-only"}.get(kind, "failed with an I/O error")
    return StorageError(
        f"storage {where} {state} ({describe(exc)}); the failed write was rolled back, so the "
        f"study's stored trials are intact; fix: {_FIXES[kind]}."
    )


class StorageRetry:
    """Call storage functions, retrying while the storage is unreachable.

    Args:
        where: the storage URL, already masked (it goes into log lines and errors).
        give_up_s: how long a call keeps failing before it gives up (``0``: at once).
        first_delay_s: the first back-off; doubled after every failed attempt ...
        max_delay_s: ... up to this.
        sleep: waits between attempts; a worker passes one that raises when it is told to
            stop.
    """

    def __init__(
        self,
        where: str,
        *,
        give_up_s: float = DEFAULT_GIVE_UP_S,
        first_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.where = where
        self.give_up_s = give_up_s
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.sleep = sleep
        self.retries = 0  # attempts that failed and were retried, over this object's life
        self.outage_s = 0.0  # time spent waiting for the storage, over this object's life

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, retried with back-off while the storage is unreachable or busy.

        Raises:
            StorageError: the storage stayed unreachable for ``give_up_s`` seconds, or it is
                full, read-only or failing (one line, URL masked).
        """
        attempt = 0
        first_failure = 0.0
        while True:
            try:
                result = fn()
            except Exception as exc:
                kind = storage_fault(exc)
                if kind is None:
                    raise
                if kind in PERMANENT:
                    raise permanent_error(kind, exc, self.where) from exc
                now = time.monotonic()
                first_failure = first_failure or now
                attempt += 1
                waited = now - first_failure
                if waited >= self.give_up_s:
                    raise StorageError(
                        f"storage {self.where} {kind} for {waited:.0f} s ({attempt} attempts "
                        f"while {what}; last error: {describe(exc)}); fix: check that the "
                        "database server is up and reachable, then start the worker again "
                        "(its trial is re-queued), or allow longer outages with "
                        "--storage-retry SECONDS."
                    ) from exc
                delay = min(self.first_delay_s * 2 ** (attempt - 1), self.max_delay_s,
                            max(self.give_up_s - waited, 0.05))
                log.warning("storage %s %s while %s (%s); retrying in %.1f s (attempt %d, "
                            "giving up after %.0f s)", self.where, kind, what, describe(exc),
                            delay, attempt, self.give_up_s)
                self.retries += 1
                self.sleep(delay)
                continue
            if attempt:
                outage = time.monotonic() - first_failure
                self.outage_s += outage
                log.warning("storage %s reachable again after %.1f s (%d retries)",
                            self.where, outage, attempt)
            return result


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def sqlite_disk_fault(where: str) -> str | None:
    """For a SQLite file: READ_ONLY when its folder cannot be written (a read-only mount, or
    permissions), FULL when its disk has no space left, else None."""
    path = sqlite_path(where)
    if path is None:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    if stat.f_flag & os.ST_RDONLY or not os.access(folder, os.W_OK):
        return READ_ONLY
    if stat.f_bavail == 0:
        return FULL
    return None
