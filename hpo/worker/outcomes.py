"""How a trial's end is stored: complete, pruned, or failed and re-queued.

Every storage call goes through the worker's retry; a trial another worker already failed
is never stored twice. A failed run is failed and re-queued (a fatal error, or too many in
a row, then stops the worker); out of memory is an outcome of the parameters: the trial
ends PRUNED with ``out_of_memory=True`` and is not retried.
See docs/design.md#how-a-trials-end-is-stored.
"""

from __future__ import annotations

import gc
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import DataError, HpoError, ModelAuditError, StorageError, one_line
from hpo.storage.rdb import is_finished_trial_error
from hpo.storage.retry import PERMANENT, describe, permanent_error, storage_fault
from hpo.study.budget import FAIL_REASON_ATTR, requeue
from hpo.study.requeue import copy_of

__all__ = [
    "FATAL_ERRORS",
    "OOM_ATTR",
    "OOM_REASON_ATTR",
    "TrialRecorder",
    "WorkerStats",
]

log = logging.getLogger(__name__)

# Errors that will recur for every trial: stop the worker instead of burning the queue.
FATAL_ERRORS = (DataError, StorageError, ModelAuditError)
OOM_ATTR = "out_of_memory"
OOM_REASON_ATTR = "out_of_memory_reason"


@dataclass
class WorkerStats:
    """What one worker did; times in seconds."""

    completed: int = 0
    pruned: int = 0
    failed: int = 0
    discarded: int = 0
    objective_s: float = 0.0  # inside the objective (training)
    idle_s: float = 0.0  # waiting for other workers' last trials
    wall_s: float = 0.0
    stopped_by: str = ""  # "budget", "timeout" or "signal SIGTERM"
    signal: int | None = None
    storage_retries: int = 0  # storage calls retried while the storage was unreachable
    storage_outage_s: float = 0.0  # time spent waiting for the storage to come back

    @property
    def trials(self) -> int:
        """Trials this worker trained (finished or failed)."""
        return self.completed + self.pruned + self.failed

    @property
    def overhead_s(self) -> float:
        """Time spent outside training and outside waiting: storage, sampling, bookkeeping."""
        return max(self.wall_s - self.objective_s - self.idle_s, 0.0)


class TrialRecorder:
    """Stores the end of this worker's trials and counts them in ``stats``.

    Args:
        study: The study the trials belong to.
        call: ``call(fn, what)`` runs a storage call, retrying while the storage is away.
        stats: The worker's statistics, updated here.
        max_retry: How often a failed trial is re-queued (``None``: always).
        storage: The storage the study was loaded from (reads a trial by id), if known.
        where: The storage, as error messages name it (password masked).
        max_consecutive_failures: :meth:`error` stops the worker (raises) after this many
            trials in a row failed with an exception; ``consecutive_failures`` counts them
            (the worker sets it back to 0 when a trial ends normally).
    """

    def __init__(
        self,
        study: optuna.Study,
        call: Callable[[Callable[[], Any], str], Any],
        stats: WorkerStats,
        max_retry: int | None,
        storage: optuna.storages.BaseStorage | None = None,
        *,
        where: str = "the storage",
        max_consecutive_failures: int = 3,
    ) -> None:
        self.study = study
        self.storage = storage
        self._call = call
        self.stats = stats
        self.max_retry = max_retry
        self.where = where
        self.max_consecutive_failures = max_consecutive_failures
        self.consecutive_failures = 0

    def finish(self, trial: optuna.Trial, state: TrialState, value: float | None) -> None:
        """Tell COMPLETE (with ``value``) or PRUNED, counting it unless another worker's
        stale check failed the trial first."""
        what = f"storing the result of trial {trial.number}"
        try:
            # skip_if_finished: a retry after a reply lost with the connection finds the
            # state stored by the first attempt instead of raising.
            if state == TrialState.COMPLETE:
                stored = self._tell(trial, what, value)
            else:
                stored = self._tell(trial, what, state=state)
        except RuntimeError as exc:
            if not is_finished_trial_error(exc):
                raise
            stored = None
        if stored is None or stored.state != state:
            log.warning("trial %d was failed by another worker just before it finished; "
                        "its result is discarded and the re-queued copy runs again",
                        trial.number)
        elif state == TrialState.COMPLETE:
            self.stats.completed += 1
            log.info("trial %d finished: value=%.4f", trial.number, value)
        else:
            self.stats.pruned += 1

    def _tell(self, trial: optuna.Trial, what: str, *args: Any, **kwargs: Any) -> FrozenTrial:
        """``study.tell(..., skip_if_finished=True)`` through the storage retry.

        skip_if_finished: a retry after a reply lost with the connection finds the state
        stored by the first attempt instead of raising. Optuna's GridSampler calls
        ``study.stop()`` from ``after_trial`` once the grid is used up, which raises outside
        ``optimize()``; ``tell`` stores the state in a ``finally`` before that error reaches
        us, so the stored trial is read back by telling again (finished: nothing is written).
        """
        def tell() -> FrozenTrial:
            return self.study.tell(trial, *args, skip_if_finished=True, **kwargs)

        try:
            return self._call(tell, what)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise
            log.info("trial %d ended the sampler's grid", trial.number)
            return self._call(tell, what)

    def finished_elsewhere(self, trial: optuna.Trial, trial_id: int | None = None) -> bool:
        """Whether the trial is already finished in the storage (failed by another worker)."""
        if self.storage is not None and trial_id is not None:
            return self.storage.get_trial(trial_id).state.is_finished()
        for t in self.study.get_trials(deepcopy=False):
            if t.number == trial.number:
                return t.state.is_finished()
        return False

    def fail(self, trial: optuna.Trial, reason: str, *, retry: bool) -> None:
        """Record ``reason``, tell FAIL and, with ``retry``, queue the trial's copy."""
        what = f"failing trial {trial.number}"
        try:
            self._call(lambda: trial.set_user_attr(FAIL_REASON_ATTR, reason), what)
        except RuntimeError as exc:
            if not is_finished_trial_error(exc):
                raise
            # Another worker's stale check got there first (this worker's heartbeat was
            # late, or the storage was away for longer than the grace period): it failed the
            # trial and queues the copy (or its reconciler does).
            log.warning("trial %d was already failed by another worker; not re-queued here",
                        trial.number)
            return
        # skip_if_finished: a retry after a reply lost with the connection finds the state
        # stored by the first attempt instead of raising.
        frozen = self._tell(trial, what, state=TrialState.FAIL)
        if retry and frozen.state == TrialState.FAIL:
            self._requeue(frozen)

    def _requeue(self, frozen: FrozenTrial) -> None:
        attempts = 0

        def add() -> None:
            nonlocal attempts
            attempts += 1
            # After a failed attempt (whose insert may have been stored before the
            # connection dropped) look first; a duplicate from a racing reconciler is
            # discarded when popped (hpo.study.requeue.superseded).
            if attempts > 1 and any(
                copy_of(t) == frozen.number for t in self.study.get_trials(deepcopy=False)
            ):
                return
            requeue(self.study, frozen, self.max_retry)

        self._call(add, f"re-queueing trial {frozen.number}")

    def error(self, trial: optuna.Trial, error: BaseException) -> None:
        """Store the end of a trial whose run raised ``error``: a storage fault during the
        run fails and re-queues it (not the trial's fault: not counted as a failure in a
        row); out of memory ends it PRUNED; anything else fails and re-queues it and counts.

        Raises:
            StorageError: the storage cannot be written at all (full, read-only), or
                ``error`` itself, when it will recur for every trial (data, storage, model
                audit errors).
            HpoError: ``max_consecutive_failures`` trials in a row failed.
        """
        fault = storage_fault(error)
        if fault in PERMANENT:
            # The trial cannot even be failed: the heartbeat check re-queues it later.
            raise permanent_error(fault, error, self.where) from error
        if fault is not None:
            # The storage went away during the run (a report, the results): nothing is
            # wrong with the trial, so it neither counts as a failure in a row nor stops
            # the worker; once the storage is back it is failed and re-queued.
            self.stats.failed += 1
            log.warning("trial %d could not reach the storage during its run (%s); it is "
                        "re-queued once the storage is back", trial.number, describe(error))
            self.fail(trial, f"error: storage {fault} during the run ({describe(error)})",
                      retry=True)
            return
        if _is_out_of_memory(error):
            reason = f"{type(error).__name__}: {one_line(error, limit=300)}"
            _release_memory(error)
            log.warning("trial %d ran out of memory (%s); recorded as pruned", trial.number,
                        reason)
            self.consecutive_failures = 0
            self.set_attrs(trial, {OOM_ATTR: True, OOM_REASON_ATTR: reason})
            self.finish(trial, TrialState.PRUNED, None)
            return
        self.stats.failed += 1
        self.consecutive_failures += 1
        self.fail(trial, f"error: {type(error).__name__}: {error}", retry=True)
        log.error("trial %d failed: %s: %s", trial.number, type(error).__name__, error,
                  exc_info=not isinstance(error, HpoError))
        if isinstance(error, FATAL_ERRORS):
            raise error
        if self.consecutive_failures >= self.max_consecutive_failures:
            raise HpoError(
                f"{self.consecutive_failures} trials in a row failed, the last with "
                f"{type(error).__name__}: {error}; fix the cause (the log has the "
                "traceback) and start the worker again: failed trials are re-queued."
            ) from error

    def set_attrs(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        try:
            for key, value in attrs.items():
                self._call(lambda k=key, v=value: trial.set_user_attr(k, v),
                           f"recording trial {trial.number}")
        except RuntimeError as exc:
            if not is_finished_trial_error(exc):
                raise
            # failed by another worker meanwhile: finish() says so


def _is_out_of_memory(error: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA, or any device), Python's MemoryError, and torch's CPU
    allocator failing ("can't allocate memory")."""
    if isinstance(error, MemoryError):
        return True
    torch = sys.modules.get("torch")  # only a worker that trains has imported it
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(error, oom):
        return True
    return isinstance(error, RuntimeError) and (
        "can't allocate memory" in str(error) or "out of memory" in str(error).lower()
    )


def _release_memory(error: BaseException) -> None:
    """Free what the failed run held: its frames (their tensors), then the CUDA cache."""
    traceback.clear_frames(error.__traceback__)
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
