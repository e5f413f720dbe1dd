"""A running trial's heartbeat: ``storage.record_heartbeat`` every interval, through outages.

:class:`Heartbeat` records the first beat at once in the worker's thread (through its
storage retry), then beats from a daemon thread until the trial ends; a storage fault there
is logged once and the thread goes on, so a trial survives an outage shorter than the
grace period (Optuna's own thread stops at its first error).
See docs/design.md#heartbeats-through-storage-outages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from hpo.storage.retry import describe, storage_fault

__all__ = ["Heartbeat", "HeartbeatStorage"]

log = logging.getLogger(__name__)


class HeartbeatStorage(Protocol):
    """What a heartbeat needs of a storage (``optuna.storages.RDBStorage`` has both)."""

    def record_heartbeat(self, trial_id: int) -> None: ...

    def get_heartbeat_interval(self) -> int | None: ...


class Heartbeat:
    """Beat for trial ``trial_id`` while inside ``with``.

    Args:
        storage: the storage that records the beats.
        trial_id: the trial's storage id.
        where: the masked storage URL, for log lines.
        first_beat: records the first beat (default: ``storage.record_heartbeat``); a
            worker passes one that goes through its storage retry.
    """

    def __init__(
        self,
        storage: HeartbeatStorage,
        trial_id: int,
        where: str,
        *,
        first_beat: Callable[[], None] | None = None,
    ) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.where = where
        self.interval = float(storage.get_heartbeat_interval() or 0)
        self.failing = False
        self._first_beat = first_beat or (lambda: storage.record_heartbeat(trial_id))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._first_beat()
        if self.interval > 0:
            self._thread = threading.Thread(
                target=self._run, name=f"heartbeat-{self.trial_id}", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def beat(self) -> None:
        """Record one beat; a storage fault is logged (once per outage), not raised."""
        try:
            self.storage.record_heartbeat(self.trial_id)
        except Exception as exc:
            if storage_fault(exc) is None:
                log.exception("heartbeat of trial id %d failed", self.trial_id)
                return
            if not self.failing:
                log.warning("heartbeat of trial id %d not recorded: storage %s %s (%s); "
                            "still trying", self.trial_id, self.where, storage_fault(exc),
                            describe(exc))
            self.failing = True
            return
        if self.failing:
            log.warning("heartbeat of trial id %d recorded again", self.trial_id)
        self.failing = False

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()
