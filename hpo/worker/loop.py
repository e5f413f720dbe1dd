"""The pull loop: run trials until the study's budget is spent, across every worker.

Budget accounting is exact (:mod:`hpo.study.budget`). A stop signal during a trial fails
and re-queues it; between storage calls it only sets a flag, so no write is cut in half.
Storage outages are retried, a killed worker's trial is re-queued by another's stale check,
and a run out of memory or returning NaN ends PRUNED.
See docs/design.md#the-pull-loop-stopping-and-faults.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.storage.heartbeat import Heartbeat
from hpo.storage.rdb import is_finished_trial_error
from hpo.storage.retry import DEFAULT_GIVE_UP_S, StorageRetry
from hpo.storage.urls import mask_url
from hpo.study.budget import admit, all_slots_held, nothing_left, slot_holders, study_budget
from hpo.study.requeue import WORKER_ATTR, fail_orphans, reconcile
from hpo.worker.outcomes import TrialRecorder, WorkerStats

__all__ = ["Worker", "WorkerStats"]

log = logging.getLogger(__name__)

class _Interrupted(KeyboardInterrupt):
    """Raised into the training by a stop signal (a KeyboardInterrupt: nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Worker:
    """Pull trials of ``study`` and run them with ``objective`` until the budget is spent.

    Args:
        study: The study, loaded with this worker's sampler and pruner.
        storage: The storage ``study`` was loaded from (:func:`hpo.storage.rdb.make_storage`):
            heartbeats, the orphan check and trial reads by id go through it. ``None``: no
            heartbeats (a dead worker's trial then holds its slot until a restart).
        objective: ``objective(trial) -> float``; raises ``optuna.TrialPruned`` to prune.
        timeout: Start no trial after this many seconds (``None``: no limit).
        poll_interval: Seconds between checks while other workers hold the last slots.
        max_retry: How often a failed trial is re-queued (``None``: always).
        max_consecutive_failures: Stop (re-raising the error) after this many trials in a
            row failed with an exception.
        storage_retry_s: How long a storage call keeps retrying while the storage is
            unreachable before the worker gives up (``0``: at the first error).
    """

    def __init__(
        self,
        study: optuna.Study,
        objective: Any,
        *,
        storage: optuna.storages.BaseStorage | None = None,
        timeout: float | None = None,
        poll_interval: float = 2.0,
        max_retry: int | None = 3,
        max_consecutive_failures: int = 3,
        storage_retry_s: float = DEFAULT_GIVE_UP_S,
    ) -> None:
        self.study = study
        self.storage = storage
        self.objective = objective
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.max_retry = max_retry
        self.max_consecutive_failures = max_consecutive_failures
        self.stats = WorkerStats()
        self._stop_signal: int | None = None
        self._in_objective = False
        self._next_stale_check = 0.0
        self._interval = _heartbeat_interval(storage)
        self._id_of_study: int | None = None
        self._budget: int | None = None
        self._room = 0  # free slots at the last verdict (0: look before asking)
        self._running = 0  # trials running at the last verdict
        self._marker = f"{socket.gethostname()}:{os.getpid()}"
        self._where = _where(study, storage)
        self._retry = StorageRetry(self._where, give_up_s=storage_retry_s,
                                   sleep=self._retry_sleep)
        self._record = TrialRecorder(study, self._call, self.stats, max_retry, storage,
                                     where=self._where,
                                     max_consecutive_failures=max_consecutive_failures)

    # ------------------------------------------------------------------------------
    def run(self, *, handle_signals: bool = True) -> WorkerStats:
        """Run trials until the budget is spent, the timeout passes or a signal arrives."""
        started = time.perf_counter()
        deadline = math.inf if self.timeout is None else started + self.timeout
        install = handle_signals and threading.current_thread() is threading.main_thread()
        previous = self._install_handlers() if install else {}
        try:
            while True:
                try:
                    # Retried as a whole: a trial asked just before the storage went away
                    # never beats, and the stale check fails and re-queues it.
                    trial = self._call(lambda: self._next_trial(deadline), "asking for a trial")
                    if trial is None:
                        break
                    self._run_trial(trial)
                except _StoppedWhileWaiting:
                    log.warning("stopped while waiting for the storage; a running trial is "
                                "failed and re-queued by the heartbeat check once it is back")
                    break
                if self._stop_signal is not None:
                    break
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.stats.wall_s = time.perf_counter() - started
            self.stats.storage_retries = self._retry.retries
            self.stats.storage_outage_s = self._retry.outage_s
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
        """Ask for a trial in budget, or return None when this worker should stop.

        The verdict on an asked trial (:func:`hpo.study.budget.admit`) reads the trials
        after the ask, and that alone makes the budget exact. The read before the ask only
        decides whether asking is worth it (not when the study is spent or every slot is
        held); while the previous verdict left ample room (:meth:`_room_to_ask`) it is
        skipped: a storage round trip less per trial, at the price of one discarded trial
        if the room was used up meanwhile.
        """
        study = self.study
        heartbeat = self._interval is not None
        while self._stop_signal is None:
            if heartbeat and time.perf_counter() >= self._next_stale_check:
                # Once per heartbeat interval is enough: a trial only goes stale after the
                # grace period, which is longer. The storage's stale-trial callback queues
                # the copies (hpo.study.requeue.StaleTrialRequeue).
                self._next_stale_check = time.perf_counter() + float(self._interval or 0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
            if self._budget is None:
                self._budget = study_budget(study)  # set once by `hpo create`
            budget = self._budget
            blind = self._room_to_ask()
            if not blind:
                trials = self._read_and_repair()
                if nothing_left(trials, budget):
                    self.stats.stopped_by = "budget"
                    return None
            if time.perf_counter() >= deadline:
                self.stats.stopped_by = "timeout"
                return None
            if not blind and all_slots_held(trials, budget):
                if not heartbeat:
                    # Without heartbeats a dead worker's trial would hold its slot forever.
                    self.stats.stopped_by = "budget"
                    return None
                self._sleep(self.poll_interval)
                continue
            with warnings.catch_warnings():
                # Optuna warns that heartbeats are meant for optimize(); this loop runs the
                # heartbeat itself, as optimize() does.
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                trial = study.ask()
            if self._stop_signal is not None:
                self._record.fail(trial, f"interrupted ({signal.Signals(self._stop_signal).name})",
                                  retry=True)
                return None
            # Repairs from the read after the ask when the one before it was skipped.
            trials = self._read_and_repair() if blind else study.get_trials(deepcopy=False)
            verdict = admit(trials, trial.number, budget)
            self._room = budget - len(slot_holders(trials))
            self._running = sum(t.state == TrialState.RUNNING for t in trials)
            if verdict.admitted:
                return trial
            log.debug("trial %d: %s (%d >= %d); discarding it", trial.number, verdict.reason,
                      verdict.rank, verdict.limit)
            self._room = 0  # the next ask looks first
            self._record.fail(trial, verdict.reason, retry=False)
            self.stats.discarded += 1
        return None

    def _room_to_ask(self) -> bool:
        """Whether the last verdict left so many free slots that asking without looking
        first cannot run out: more than two per trial that was running then (each running
        worker takes at most one per trial it finishes; the margin covers a fast one)."""
        return self._room > 2 * self._running + 2

    def _read_and_repair(self) -> list[FrozenTrial]:
        """The study's trials, after the repairs they call for (a FAIL trial without its
        copy, an orphaned RUNNING trial); read again only when something was written."""
        study = self.study
        max_retry = self._record.max_retry
        trials = study.get_trials(deepcopy=False)
        changed = (fail_orphans(study, self.storage, trials, max_retry)
                   if self._interval is not None else [])
        changed += reconcile(study, trials, max_retry)
        return study.get_trials(deepcopy=False) if changed else trials

    def _sleep(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        started = time.perf_counter()
        while self._stop_signal is None and time.perf_counter() < end:
            time.sleep(min(0.1, max(end - time.perf_counter(), 0.0)))
        self.stats.idle_s += time.perf_counter() - started

    def _run_trial(self, trial: optuna.Trial) -> None:
        value: float | None = None
        state = TrialState.FAIL
        error: BaseException | None = None
        started = time.perf_counter()
        trial_id = self._storage_trial_id(trial) if self._interval is not None else None
        try:
            with self._heartbeat(trial, trial_id):
                try:
                    self._in_objective = True
                    try:
                        if self._stop_signal is not None:
                            # The signal came between the ask and here (the handler raises
                            # only from now on): the trial is failed and re-queued, not run.
                            raise _Interrupted(self._stop_signal)
                        value = self.objective(trial)
                    finally:
                        self._in_objective = False
                    state = TrialState.COMPLETE
                except optuna.TrialPruned as exc:
                    state = TrialState.PRUNED
                    log.info("trial %d pruned: %s", trial.number, exc)
                except (Exception, KeyboardInterrupt) as exc:
                    error = exc
        except RuntimeError as exc:
            if not is_finished_trial_error(exc):
                raise
            error = exc  # the marker was refused: failed by another worker's check already
        self.stats.objective_s += time.perf_counter() - started

        # Another worker's stale check may have failed this trial while it ran. A result is
        # then refused by finish() itself (so a trial that ended normally is not read again:
        # one transaction less per trial); an error may be that very refusal of one of the
        # run's writes, so it is checked before it counts as a failure of the trial.
        if error is not None and self._call(
            lambda: self._record.finished_elsewhere(trial, trial_id),
            f"checking trial {trial.number}",
        ):
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
            self._record.fail(trial, f"interrupted ({signal.Signals(signum).name})", retry=True)
            log.warning("trial %d interrupted; it is re-queued", trial.number)
            return
        if error is not None:
            self._record.error(trial, error)
            return
        self._record.consecutive_failures = 0
        if state == TrialState.COMPLETE and isinstance(value, float) and not math.isfinite(value):
            # Optuna would store this as FAIL, without a reason, and re-queue nothing.
            log.warning("trial %d returned %s: recorded as diverged", trial.number, value)
            self._record.set_attrs(trial, {"diverged": True,
                                    "divergence_reason": f"the objective returned {value}"})
            state = TrialState.PRUNED
        self._record.finish(trial, state, value)

    def _storage_trial_id(self, trial: optuna.Trial) -> int:
        """The trial's storage id (public storage calls; the study id is read once)."""
        assert self.storage is not None  # only with heartbeats
        storage = self.storage

        def read() -> int:
            if self._id_of_study is None:
                self._id_of_study = storage.get_study_id_from_name(self.study.study_name)
            return storage.get_trial_id_from_study_id_trial_number(self._id_of_study, trial.number)

        return self._call(read, f"reading the id of trial {trial.number}")

    def _heartbeat(
        self, trial: optuna.Trial, trial_id: int | None
    ) -> contextlib.AbstractContextManager[Any]:
        """Beats while the trial runs. The first beat, then the ``hpo_worker`` marker, are
        written before training: a RUNNING trial without the marker whose start is older
        than the grace period is an orphan (its worker died before it could beat)."""
        if self._interval is None or trial_id is None or self.storage is None:
            return contextlib.nullcontext()
        storage = self.storage

        def first_beat() -> None:
            self._call(lambda: storage.record_heartbeat(trial_id),
                       f"recording the heartbeat of trial {trial.number}")
            self._call(lambda: trial.set_user_attr(WORKER_ATTR, self._marker),
                       f"marking trial {trial.number}")

        return Heartbeat(storage, trial_id, self._where, first_beat=first_beat)

    def _call(self, fn: Any, what: str) -> Any:
        return self._retry.call(fn, what)

    def _retry_sleep(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            if self._stop_signal is not None:
                raise _StoppedWhileWaiting()
            time.sleep(min(0.1, max(end - time.perf_counter(), 0.0)))


class _StoppedWhileWaiting(Exception):
    """A stop signal arrived while the worker waited for an unreachable storage."""


def _heartbeat_interval(storage: optuna.storages.BaseStorage | None) -> int | None:
    if isinstance(storage, optuna.storages.RDBStorage):
        return storage.get_heartbeat_interval()
    return None


def _where(study: optuna.Study, storage: optuna.storages.BaseStorage | None) -> str:
    url = getattr(storage, "url", None)
    return mask_url(url) if url else f"of study {study.study_name}"
