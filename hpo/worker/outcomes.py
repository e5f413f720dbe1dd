"""How a trial's end is stored: complete, pruned, or failed and re-queued.

Every storage call goes through the worker's retrying ``call`` (:mod:`hpo.storage.retry`).
A trial that another worker's stale-trial check failed first (its heartbeat was late) is
never stored twice: its result is discarded and the re-queued copy runs again.

Failing a trial is three public calls: its reason (``set_user_attr``), ``tell(FAIL)``, and
its copy (``add_trial``). A crash between them leaves a FAIL trial without a copy, which
the reconciler of every worker repairs (:mod:`hpo.study.requeue`).

Out of memory (``torch.OutOfMemoryError``, ``MemoryError``, a CPU allocation failure) is an
outcome of the parameters (width, batch size, precision) on this hardware, like divergence:
the trial ends PRUNED with ``out_of_memory=True`` and the reason, counts against the budget,
is not retried, and the worker frees the memory and goes on.
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

from hpo.storage.rdb import is_finished_trial_error
from hpo.study.budget import FAIL_REASON_ATTR, requeue
from hpo.study.requeue import copy_of

__all__ = [
    "OOM_ATTR",
    "OOM_REASON_ATTR",
    "TrialRecorder",
    "WorkerStats",
    "is_out_of_memory",
    "release_memory",
]

log = logging.getLogger(__name__)

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
    """

    def __init__(
        self,
        study: optuna.Study,
        call: Callable[[Callable[[], Any], str], Any],
        stats: WorkerStats,
        max_retry: int | None,
        storage: optuna.storages.BaseStorage | None = None,
    ) -> None:
        self.study = study
        self.storage = storage
        self._call = call
        self.stats = stats
        self.max_retry = max_retry

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

    def set_attrs(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        try:
            for key, value in attrs.items():
                self._call(lambda k=key, v=value: trial.set_user_attr(k, v),
                           f"recording trial {trial.number}")
        except RuntimeError as exc:
            if not is_finished_trial_error(exc):
                raise
            # failed by another worker meanwhile: finish() says so


def is_out_of_memory(error: BaseException) -> bool:
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


def release_memory(error: BaseException) -> None:
    """Free what the failed run held: its frames (their tensors), then the CUDA cache."""
    traceback.clear_frames(error.__traceback__)
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
