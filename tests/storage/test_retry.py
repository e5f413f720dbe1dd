"""Storage fault classification and the retry with back-off (no storage needed: the errors
are built the way SQLAlchemy and Optuna wrap the drivers' own). The real outages are in
tests/faults."""

from __future__ import annotations

import sqlite3

import optuna
import pytest
import sqlalchemy.exc

from hpo.errors import StorageError
from hpo.storage.retry import (
    BUSY,
    FULL,
    READ_ONLY,
    UNREACHABLE,
    StorageRetry,
    storage_fault,
)


class _PgError(Exception):
    """Stands in for a psycopg2 error: it carries the server's SQLSTATE (None: client side)."""

    def __init__(self, message: str, pgcode: str | None = None) -> None:
        super().__init__(message)
        self.pgcode = pgcode


def _wrapped(orig: Exception, kind=sqlalchemy.exc.OperationalError) -> Exception:
    """``orig`` as Optuna's RDBStorage raises it: StorageInternalError from SQLAlchemy's."""
    try:
        try:
            raise kind("SELECT 1", {}, orig)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise optuna.exceptions.StorageInternalError("An exception ...") from exc
    except optuna.exceptions.StorageInternalError as exc:
        return exc


@pytest.mark.parametrize(
    ("orig", "kind"),
    [
        (sqlite3.OperationalError("database is locked"), BUSY),
        (sqlite3.OperationalError("database or disk is full"), FULL),
        (sqlite3.OperationalError("attempt to write a readonly database"), READ_ONLY),
        (sqlite3.OperationalError("no such table: trials"), None),  # a bug, not a fault
        (_PgError("server closed the connection unexpectedly"), UNREACHABLE),
        (_PgError("terminating connection due to administrator command", "57P01"),
         UNREACHABLE),
        (_PgError("sorry, too many clients already", "53300"), BUSY),
        (_PgError("could not extend file: No space left on device", "53100"), FULL),
        (_PgError("value too long for type character varying(512)", "22001"), None),
    ],
)
def test_storage_fault_sees_through_optunas_wrapping(orig: Exception, kind) -> None:
    assert storage_fault(_wrapped(orig)) == kind


def test_errors_that_are_not_storage_faults() -> None:
    assert storage_fault(ValueError("bug")) is None
    already = StorageError("one line")
    already.__cause__ = _wrapped(_PgError("server closed the connection unexpectedly"))
    assert storage_fault(already) is None  # an inner retry already gave up on it


def test_retry_backs_off_then_succeeds() -> None:
    sleeps: list[float] = []
    retry = StorageRetry("postgresql://u:***@h/db", first_delay_s=0.5, max_delay_s=1.5,
                         sleep=sleeps.append)
    failures = [_wrapped(_PgError("connection refused"))] * 4

    def call() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    assert retry.call(call, "testing") == "ok"
    assert sleeps == [0.5, 1.0, 1.5, 1.5]  # doubled, capped
    assert retry.retries == 4


def test_retry_gives_up_with_one_line() -> None:
    retry = StorageRetry("postgresql://u:***@h/db", give_up_s=0, sleep=lambda s: None)
    with pytest.raises(StorageError) as info:
        retry.call(lambda: (_ for _ in ()).throw(_wrapped(_PgError("connection refused"))),
                   "asking for a trial")
    text = str(info.value)
    assert "\n" not in text and "postgresql://u:***@h/db unreachable for 0 s" in text
    assert "while asking for a trial" in text and "--storage-retry" in text


def test_full_or_read_only_is_not_retried() -> None:
    sleeps: list[float] = []
    retry = StorageRetry("sqlite:///x.db", sleep=sleeps.append)
    with pytest.raises(StorageError, match=r"sqlite:///x.db is full \(database or disk is full\)"):
        retry.call(lambda: (_ for _ in ()).throw(
            _wrapped(sqlite3.OperationalError("database or disk is full"))), "telling")
    assert sleeps == []


def test_heartbeat_survives_an_outage(caplog) -> None:
    from hpo.storage.heartbeat import Heartbeat

    class Flaky:
        beats = 0

        def record_heartbeat(self, trial_id: int) -> None:
            self.beats += 1
            if self.beats in (2, 3):
                raise _wrapped(_PgError("server closed the connection unexpectedly"))

        def get_heartbeat_interval(self) -> int:
            return 1

    storage = Flaky()
    with Heartbeat(storage, 1, "postgresql://h/db") as beat:  # type: ignore[arg-type]
        assert storage.beats == 1  # the first beat, at once
        beat.beat()  # logged, not raised: the thread keeps beating
        beat.beat()
        assert beat.failing
        beat.beat()
        assert not beat.failing and storage.beats == 4
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("not recorded" in w for w in warnings) == 1  # once per outage
    assert any("recorded again" in w for w in warnings)
