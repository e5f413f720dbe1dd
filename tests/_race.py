"""Force the worst interleaving of two processes' trial state changes, without timing.

:class:`InTheWindow` makes a storage's next state change (``set_trial_state_values``: a
pop, a tell, a stale-check fail) run another process's storage call right after it has read
the trial's state and before it writes the new one. On SQLite, Optuna's read-then-write let
both calls win there until every transaction began with ``BEGIN IMMEDIATE``; the storage
must make exactly one of them win.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

__all__ = ["InTheWindow"]


class InTheWindow:
    """Run ``action`` inside the next state change of ``study``'s storage.

    ``action`` runs in a thread: where the state change holds a lock over the window
    (PostgreSQL's row lock of ``SELECT ... FOR UPDATE``, SQLite's write lock), the action
    waits for it instead of deadlocking the test, the state change goes on after a few
    seconds, and :meth:`result` collects the action once it is done. Either way the two
    calls race from the same state.
    """

    def __init__(self, study: optuna.Study, action: Callable[[], Any]) -> None:
        self._action = action
        self._outcome: list[Any] = []
        self._thread: threading.Thread | None = None
        storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache
        change = storage.set_trial_state_values
        check = storage.check_trial_is_updatable  # called between the read and the write
        armed = threading.Event()

        def armed_during(call: Callable[..., Any]) -> Callable[..., Any]:
            def armed_call(*args: Any, **kwargs: Any) -> Any:
                armed.set()
                try:
                    return call(*args, **kwargs)
                finally:
                    armed.clear()

            return armed_call

        def checking(trial_id: int, trial_state: TrialState) -> None:
            check(trial_id, trial_state)
            if armed.is_set() and self._thread is None:
                self._thread = threading.Thread(target=self._run)
                self._thread.start()
                self._thread.join(timeout=3)  # still running: blocked by a lock we hold

        storage.set_trial_state_values = armed_during(change)
        storage.check_trial_is_updatable = checking

    def _run(self) -> None:
        try:
            self._outcome.append(self._action())
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            self._outcome.append(exc)

    def result(self) -> Any:
        """What ``action`` returned or raised."""
        assert self._thread is not None, "no state change read the trial"
        self._thread.join(timeout=120)
        assert self._outcome, "the racing call never finished"
        return self._outcome[0]
