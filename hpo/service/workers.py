"""The pull loop: run trials until the study's budget is spent, across every worker.

Budget accounting (exact, whatever the number of workers and machines)
----------------------------------------------------------------------
The budget ``B`` (study user attr ``hpo_budget`` = search trials + baselines) is the number
of trials that must end COMPLETE or PRUNED. A trial *holds a slot* while it is WAITING,
RUNNING, COMPLETE or PRUNED; a FAIL trial holds none, so crashed, interrupted or errored
trials never eat the budget (they are re-queued with the same parameters and seed instead).

* Before asking, a worker stops when ``B`` trials are finished, and waits (without asking)
  while all ``B`` slots are held by other workers' running trials: if one of them dies, its
  heartbeat goes stale, it is failed and re-queued, and a waiting worker runs the copy.
* After ``study.ask()`` the trial has its number. Optuna numbers trials under a lock on the
  study row, so every trial with a lower number is already visible. The trial is *in budget*
  when fewer than ``B`` slot-holding trials have a lower number. Two workers racing for the
  last slot both ask, but only the lower number is in budget; the other is **discarded**:
  told FAIL at once, before any parameter is sampled, with user attr
  ``hpo_fail_reason="discarded: over budget"``. A discarded trial holds no slot and trains
  nothing, so it never becomes an extra finished trial.
* Why that is exact: suppose ``B + 1`` trials finished. When the highest-numbered of them
  was checked, the ``B`` others already existed (lower numbers are committed first) and held
  slots (a trial that ends finished never was FAIL), so its rank was ``B``: it would have
  been discarded. This relies on Optuna numbering trials under the study-row lock
  (``RDBStorage._create_new_trial``; SQLite transactions here are ``BEGIN IMMEDIATE``).

Stopping: SIGINT/SIGTERM during training interrupt it; the trial is told FAIL
(``hpo_fail_reason="interrupted (SIGTERM)"``) and re-queued, so nothing stays RUNNING and the
next run resumes it. Between storage calls a signal only sets a flag that the loop checks, so
a storage write is never cut in half.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import DataError, HpoError, ModelAuditError, StorageError

__all__ = [
    "BUDGET_ATTR",
    "DISCARDED",
    "FAIL_REASON_ATTR",
    "SLOT_STATES",
    "Worker",
    "WorkerStats",
    "budget_rank",
    "requeue",
    "study_budget",
]

log = logging.getLogger(__name__)

BUDGET_ATTR = "hpo_budget"
FAIL_REASON_ATTR = "hpo_fail_reason"
DISCARDED = "discarded: over budget"
#: States of trials that hold a slot of the budget.
SLOT_STATES = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
# User attrs that describe a trial's input (copied to a re-queued trial); the rest are results.
_INPUT_ATTRS = ("hpo_baseline", "hpo_seed")
# Errors that will recur for every trial: stop the worker instead of burning the queue.
_FATAL = (DataError, StorageError, ModelAuditError)


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

    @property
    def trials(self) -> int:
        """Trials this worker trained (finished or failed)."""
        return self.completed + self.pruned + self.failed

    @property
    def overhead_s(self) -> float:
        """Time spent outside training and outside waiting: storage, sampling, bookkeeping."""
        return max(self.wall_s - self.objective_s - self.idle_s, 0.0)


def study_budget(study: optuna.Study) -> int:
    """The study's total budget (search + baseline trials), set by ``hpo create``."""
    budget = study.user_attrs.get(BUDGET_ATTR)
    if not isinstance(budget, int):
        raise StorageError(
            f"study {study.study_name!r} has no {BUDGET_ATTR!r} attribute (got {budget!r}); "
            "it was not created by 'hpo create'; fix: create it with hpo create CONFIG."
        )
    return budget


def budget_rank(trials: list[FrozenTrial], number: int) -> int:
    """How many slot-holding trials come before trial ``number``; in budget when < budget."""
    return sum(1 for t in trials if t.number < number and t.state in SLOT_STATES)


def requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int | None) -> bool:
    """Queue a copy of a failed trial (same parameters, baseline tag and seed).

    Mirrors :class:`optuna.storages.RetryHeartbeatStaleTrialCallback`, but copies only the
    input attributes: the failed trial's partial results must not show up on the copy.
    Returns False when the trial was already retried ``max_retry`` times.
    """
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if max_retry is not None and len(history) > max_retry:
        log.warning("trial %d failed %d times; not retrying it again", history[0], len(history))
        return False
    system_attrs = {"failed_trial": history[0], **trial.system_attrs, "retry_history": history}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={k: v for k, v in trial.user_attrs.items() if k in _INPUT_ATTRS},
            system_attrs=system_attrs,
        )
    )
    return True


class _Interrupted(KeyboardInterrupt):
    """Raised into the training by a stop signal (a KeyboardInterrupt: nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Worker:
    """Pull trials of ``study`` and run them with ``objective`` until the budget is spent.

    Args:
        study: The study, loaded with this worker's sampler and pruner.
        objective: ``objective(trial) -> float``; raises ``optuna.TrialPruned`` to prune.
        timeout: Start no trial after this many seconds (``None``: no limit).
        poll_interval: Seconds between checks while other workers hold the last slots.
        max_retry: How often a failed trial is re-queued (``None``: always).
        max_consecutive_failures: Stop (re-raising the error) after this many trials in a
            row failed with an exception.
    """

    def __init__(
        self,
        study: optuna.Study,
        objective: Any,
        *,
        timeout: float | None = None,
        poll_interval: float = 2.0,
        max_retry: int | None = 3,
        max_consecutive_failures: int = 3,
    ) -> None:
        self.study = study
        self.objective = objective
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.max_retry = max_retry
        self.max_consecutive_failures = max_consecutive_failures
        self.stats = WorkerStats()
        self._stop_signal: int | None = None
        self._in_objective = False
        self._consecutive_failures = 0
        self._next_stale_check = 0.0

    # ------------------------------------------------------------------------------
    def run(self, *, handle_signals: bool = True) -> WorkerStats:
        """Run trials until the budget is spent, the timeout passes or a signal arrives."""
        started = time.perf_counter()
        deadline = math.inf if self.timeout is None else started + self.timeout
        install = handle_signals and threading.current_thread() is threading.main_thread()
        previous = self._install_handlers() if install else {}
        try:
            while True:
                trial = self._next_trial(deadline)
                if trial is None:
                    break
                self._run_trial(trial)
                if self._stop_signal is not None:
                    break
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.stats.wall_s = time.perf_counter() - started
        if self._stop_signal is not None:
            self.stats.signal = self._stop_signal
            self.stats.stopped_by = f"signal {signal.Signals(self._stop_signal).name}"
        return self.stats

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop after the current storage call (from a signal handler or another thread)."""
        self._stop_signal = signum

    # ------------------------------------------------------------------------------
    def _install_handlers(self) -> dict[int, Any]:
        def handler(signum: int, _frame: Any) -> None:
            again = self._stop_signal is not None
            self._stop_signal = signum
            # A second signal means "now", even in the middle of a storage call.
            if self._in_objective or again:
                raise _Interrupted(signum)

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
        return previous

    def _next_trial(self, deadline: float) -> optuna.Trial | None:
        """Ask for a trial in budget, or return None when this worker should stop."""
        study = self.study
        heartbeat = is_heartbeat_enabled(study._storage)
        while self._stop_signal is None:
            if heartbeat and time.perf_counter() >= self._next_stale_check:
                # Once per heartbeat interval is enough: a trial only goes stale after the
                # grace period, which is longer.
                self._next_stale_check = (
                    time.perf_counter() + study._storage.get_heartbeat_interval()
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
            budget = study_budget(study)
            trials = study.get_trials(deepcopy=False)
            if sum(t.state in FINISHED_STATES for t in trials) >= budget:
                self.stats.stopped_by = "budget"
                return None
            if time.perf_counter() >= deadline:
                self.stats.stopped_by = "timeout"
                return None
            held = sum(t.state in SLOT_STATES for t in trials)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if held >= budget and not waiting:
                if not heartbeat:
                    # Without heartbeats a dead worker's trial would hold its slot forever.
                    self.stats.stopped_by = "budget"
                    return None
                self._sleep(self.poll_interval)
                continue
            with warnings.catch_warnings():
                # Optuna warns that heartbeats are meant for optimize(); this loop runs the
                # heartbeat thread itself, as optimize() does.
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                trial = study.ask()
            if self._stop_signal is not None:
                self._fail(trial, f"interrupted ({signal.Signals(self._stop_signal).name})",
                           retry=True)
                return None
            # Read through the per-ask trial cache that the sampler reads next anyway (ask
            # clears it before creating the trial), which saves one storage read per trial.
            trials = study._get_trials(deepcopy=False, use_cache=True)
            if not any(t.number == trial.number for t in trials):  # pragma: no cover
                trials = study.get_trials(deepcopy=False)
            rank = budget_rank(trials, trial.number)
            if rank < budget:
                return trial
            log.debug("trial %d is over budget (%d >= %d); discarding it",
                      trial.number, rank, budget)
            self._fail(trial, DISCARDED, retry=False)
            self.stats.discarded += 1
        return None

    def _sleep(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        started = time.perf_counter()
        while self._stop_signal is None and time.perf_counter() < end:
            time.sleep(min(0.1, max(end - time.perf_counter(), 0.0)))
        self.stats.idle_s += time.perf_counter() - started

    def _run_trial(self, trial: optuna.Trial) -> None:
        study = self.study
        value: float | None = None
        state = TrialState.FAIL
        error: BaseException | None = None
        started = time.perf_counter()
        with get_heartbeat_thread(trial._trial_id, study._storage):
            try:
                self._in_objective = True
                try:
                    value = self.objective(trial)
                finally:
                    self._in_objective = False
                state = TrialState.COMPLETE
            except optuna.TrialPruned as exc:
                state = TrialState.PRUNED
                log.info("trial %d pruned: %s", trial.number, exc)
            except (Exception, KeyboardInterrupt) as exc:
                error = exc
        self.stats.objective_s += time.perf_counter() - started

        if self._finished_elsewhere(trial):
            # Another worker's stale-trial check failed (and re-queued) this trial while it
            # ran: its heartbeat was late, e.g. on an overloaded machine. Its result cannot
            # be stored any more; the re-queued copy runs it again.
            log.warning("trial %d was failed by another worker while it ran (its heartbeat "
                        "was late; consider a larger heartbeat.grace); its result is discarded",
                        trial.number)
            if isinstance(error, KeyboardInterrupt):
                self._stop_signal = getattr(error, "signum", signal.SIGINT)
            return
        if isinstance(error, KeyboardInterrupt):
            signum = getattr(error, "signum", signal.SIGINT)
            self._stop_signal = signum
            self._fail(trial, f"interrupted ({signal.Signals(signum).name})", retry=True)
            log.warning("trial %d interrupted; it is re-queued", trial.number)
            return
        if error is not None:
            self.stats.failed += 1
            self._consecutive_failures += 1
            self._fail(trial, f"error: {type(error).__name__}: {error}", retry=True)
            log.error("trial %d failed: %s: %s", trial.number, type(error).__name__, error,
                      exc_info=not isinstance(error, HpoError))
            if isinstance(error, _FATAL):
                raise error
            if self._consecutive_failures >= self.max_consecutive_failures:
                raise HpoError(
                    f"{self._consecutive_failures} trials in a row failed, the last with "
                    f"{type(error).__name__}: {error}; fix the cause (the log has the "
                    "traceback) and start the worker again: failed trials are re-queued."
                ) from error
            return

        self._consecutive_failures = 0
        try:
            if state == TrialState.COMPLETE:
                study.tell(trial, value)
                self.stats.completed += 1
                log.info("trial %d finished: value=%.4f", trial.number, value)
            else:
                study.tell(trial, state=TrialState.PRUNED)
                self.stats.pruned += 1
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("trial %d was failed by another worker just before it finished; "
                        "its result is discarded and the re-queued copy runs again",
                        trial.number)

    def _finished_elsewhere(self, trial: optuna.Trial) -> bool:
        frozen = self.study._storage.get_trial(trial._trial_id)
        return frozen.state.is_finished()

    def _fail(self, trial: optuna.Trial, reason: str, *, retry: bool) -> None:
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
        frozen = self.study.tell(trial, state=TrialState.FAIL)
        if retry:
            requeue(self.study, frozen, self.max_retry)
