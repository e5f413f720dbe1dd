"""The pull loop: exact budget across workers, discards, retries, signals.

Runs against every storage kind, like optuna/testing/storages.py: SQLite always, and
PostgreSQL when HPO_TEST_POSTGRES_URL is set (an unreachable server is then an error, not a
skip). The objective is a plain function, so these tests train nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
import weakref

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config.study import HeartbeatConfig
from hpo.storage.rdb import make_storage
from hpo.study.budget import BUDGET_ATTR, DISCARDED, FAIL_REASON_ATTR, budget_rank, requeue
from hpo.study.requeue import STALE_REASON, StaleTrialRequeue
from hpo.worker import loop as loop_module
from hpo.worker.loop import Worker
from hpo.worker.outcomes import TrialRecorder, WorkerStats
from tests._race import InTheWindow

pytestmark = pytest.mark.filterwarnings(
    "ignore:Heartbeat of storage:UserWarning", "ignore::optuna.exceptions.ExperimentalWarning"
)

# The storage each test study was opened with (a worker takes it, as open_worker passes it).
_STORAGES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _storage(url: str, grace: int) -> optuna.storages.RDBStorage:
    return make_storage(url, HeartbeatConfig(interval=1, grace=grace),
                        stale_trial_callback=StaleTrialRequeue(max_retry=3))


def _worker(study: optuna.Study, objective, **kwargs) -> Worker:
    return Worker(study, objective, storage=_STORAGES.get(study), **kwargs)


def _trial_id(study: optuna.Study, trial: optuna.Trial) -> int:
    storage = _STORAGES[study]
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number)


def _study(url: str, budget: int, *, grace: int = 30, name: str | None = None) -> optuna.Study:
    """A fresh study (unique name: the PostgreSQL database is shared) with a budget."""
    storage = _storage(url, grace)
    name = name or f"test-{uuid.uuid4().hex[:10]}"
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0), load_if_exists=True,
    )
    study.set_user_attr(BUDGET_ATTR, budget)
    _STORAGES[study] = storage
    return study


def _reopen(study: optuna.Study, url: str, grace: int = 30) -> optuna.Study:
    """The same study through another storage connection, as another worker sees it."""
    storage = _storage(url, grace)
    other = optuna.load_study(study_name=study.study_name, storage=storage,
                              sampler=optuna.samplers.RandomSampler())
    _STORAGES[other] = storage
    return other


def _objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0.0, 1.0)


def _states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def test_single_worker_runs_exactly_the_budget(storage_url: str) -> None:
    study = _study(storage_url, budget=4)
    stats = _worker(study, _objective).run(handle_signals=False)
    assert _states(study) == {"COMPLETE": 4}
    assert (stats.completed, stats.stopped_by) == (4, "budget")
    # A second worker on a spent study starts nothing.
    again = _worker(_reopen(study, storage_url), _objective).run(handle_signals=False)
    assert again.trials == 0 and len(study.get_trials()) == 4


def test_the_read_before_an_ask_is_skipped_only_while_the_room_is_ample(
    storage_url: str,
) -> None:
    budget = 12
    study = _study(storage_url, budget=budget)
    events: list[str] = []
    get_trials, ask = study.get_trials, study.ask

    def reading(*args, **kwargs):
        events.append("read")
        return get_trials(*args, **kwargs)

    def asking(*args, **kwargs):
        events.append("ask")
        return ask(*args, **kwargs)

    study.get_trials, study.ask = reading, asking  # instance attributes: this study only
    stats = _worker(study, _objective).run(handle_signals=False)
    assert (stats.completed, stats.discarded, stats.stopped_by) == (budget, 0, "budget")
    # Before each ask: a read (looked first) or none (asked blind on the last verdict's room).
    asks = [i for i, e in enumerate(events) if e == "ask"]
    looked = [i > 0 and events[i - 1] == "read" and (i < 2 or events[i - 2] != "ask")
              for i in asks]
    # Room after trial k's verdict: budget - (k + 1) slots; blind while it exceeds
    # 2 * running (1: the trial just asked) + 2 = 4, i.e. for the asks after trials 0..6.
    assert looked == [True] + [False] * 7 + [True] * 4, events
    assert _states(study) == {"COMPLETE": budget}


def test_parallel_workers_finish_exactly_the_budget(storage_url: str) -> None:
    study = _study(storage_url, budget=7)
    calls: list[int] = []

    def slow(trial: optuna.Trial) -> float:
        calls.append(trial.number)
        time.sleep(0.02)
        return _objective(trial)

    workers = [_worker(_reopen(study, storage_url), slow, poll_interval=0.05) for _ in range(3)]
    threads = [threading.Thread(target=w.run, kwargs={"handle_signals": False})
               for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    finished = [t for t in study.get_trials() if t.state in (TrialState.COMPLETE,
                                                             TrialState.PRUNED)]
    assert len(finished) == 7
    assert len(calls) == 7  # no trial was trained and then thrown away
    assert not [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    assert sum(w.stats.completed for w in workers) == 7


def test_racing_ask_for_the_last_slot_is_discarded_untrained(storage_url: str) -> None:
    study = _study(storage_url, budget=1)
    other = _reopen(study, storage_url)
    trained: list[int] = []
    ask = study.ask

    def racing_ask(*args, **kwargs):
        # Another worker takes and finishes the only slot between our check and our ask.
        first = other.ask()
        other.tell(first, 0.5)
        return ask(*args, **kwargs)

    study.ask = racing_ask  # type: ignore[method-assign]
    stats = _worker(study, lambda t: trained.append(t.number) or 1.0).run(handle_signals=False)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs[FAIL_REASON_ATTR] == DISCARDED
    assert trials[1].params == {}  # nothing was sampled for it
    assert trained == [] and stats.discarded == 1 and stats.stopped_by == "budget"


def test_budget_rank_counts_only_slot_holding_trials_before(storage_url: str) -> None:
    study = _study(storage_url, budget=2)
    a, b, c = study.ask(), study.ask(), study.ask()
    study.tell(a, state=TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    assert budget_rank(trials, c.number) == 1  # a failed: only b holds a slot before c
    assert budget_rank(trials, b.number) == 0


def test_failed_trial_is_requeued_and_does_not_eat_the_budget(storage_url: str) -> None:
    study = _study(storage_url, budget=3)
    seen: list[float] = []

    def flaky(trial: optuna.Trial) -> float:
        x = _objective(trial)
        seen.append(x)
        if len(seen) == 1:
            raise RuntimeError("transient")
        return x

    stats = _worker(study, flaky).run(handle_signals=False)
    trials = study.get_trials()
    assert _states(study) == {"FAIL": 1, "COMPLETE": 3}
    failed = trials[0]
    assert failed.user_attrs[FAIL_REASON_ATTR] == "error: RuntimeError: transient"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == failed.number]
    assert len(retry) == 1 and retry[0].params == failed.params
    assert retry[0].state == TrialState.COMPLETE
    assert (stats.failed, stats.completed) == (1, 3)


def test_repeated_failures_stop_the_worker(storage_url: str) -> None:
    from hpo.errors import HpoError

    study = _study(storage_url, budget=5)

    def broken(trial: optuna.Trial) -> float:
        raise ValueError("bug")

    worker = _worker(study, broken, max_consecutive_failures=2)
    with pytest.raises(HpoError, match="2 trials in a row failed"):
        worker.run(handle_signals=False)
    assert not [t for t in study.get_trials() if t.state == TrialState.RUNNING]


def test_pruned_trials_count_against_the_budget(storage_url: str) -> None:
    study = _study(storage_url, budget=3)

    def pruned(trial: optuna.Trial) -> float:
        _objective(trial)
        raise optuna.TrialPruned("diverged: nan")

    stats = _worker(study, pruned).run(handle_signals=False)
    assert _states(study) == {"PRUNED": 3} and stats.pruned == 3


def test_requeue_copies_inputs_not_results(storage_url: str) -> None:
    study = _study(storage_url, budget=3)
    study.enqueue_trial({"x": 0.25}, user_attrs={"hpo_baseline": True, "hpo_seed": 2})
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.set_user_attr("test_accuracy", 0.9)
    frozen = study.tell(trial, state=TrialState.FAIL)
    assert requeue(study, frozen, max_retry=1)
    copy = study.get_trials()[-1]
    assert copy.state == TrialState.WAITING
    assert copy.user_attrs == {"hpo_baseline": True, "hpo_seed": 2,
                               "hpo_retry_reason": STALE_REASON}  # it had no reason
    assert copy.system_attrs["retry_history"] == [frozen.number]
    rerun = study.ask()
    assert rerun.suggest_float("x", 0.0, 1.0) == 0.25
    failed_again = study.tell(rerun, state=TrialState.FAIL)
    assert not requeue(study, failed_again, max_retry=1)  # retried once already


def test_dead_workers_trial_is_failed_retried_and_replaced(storage_url: str) -> None:
    study = _study(storage_url, budget=2, grace=1)
    dead = _reopen(study, storage_url, grace=1)
    orphan = dead.ask()
    orphan.suggest_float("x", 0.0, 1.0)
    _STORAGES[dead].record_heartbeat(_trial_id(dead, orphan))  # one beat, then the worker "dies"
    worker = _worker(_reopen(study, storage_url, grace=1), _objective, poll_interval=0.2)
    stats = worker.run(handle_signals=False)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert [t.state for t in retried] == [TrialState.COMPLETE]
    assert retried[0].params == trials[0].params
    # It waited for the orphan instead of overshooting: no trial asked past the budget (that
    # would be an extra FAIL, "discarded: over budget"). How long it waited depends on the
    # machine: a worker that starts after the grace period finds the orphan stale at once.
    assert _states(study) == {"FAIL": 1, "COMPLETE": 2}
    assert stats.discarded == 0


def test_sigterm_fails_and_requeues_the_running_trial(storage_url: str) -> None:
    study = _study(storage_url, budget=3)

    def interrupted(trial: optuna.Trial) -> float:
        _objective(trial)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("not interrupted")

    before = signal.getsignal(signal.SIGTERM)
    stats = _worker(study, interrupted).run()
    assert signal.getsignal(signal.SIGTERM) is before
    assert stats.signal == signal.SIGTERM and stats.stopped_by == "signal SIGTERM"
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].user_attrs[FAIL_REASON_ATTR] == "interrupted (SIGTERM)"
    assert trials[1].params == trials[0].params
    # Running again resumes: the re-queued trial runs first, and the budget is met.
    _worker(study, _objective).run(handle_signals=False)
    assert _states(study) == {"FAIL": 1, "COMPLETE": 3}


def test_signal_between_the_ask_and_the_objective_fails_and_requeues_the_trial(
    storage_url: str,
) -> None:
    """A signal that lands after a trial was asked (it is RUNNING) but before its objective
    started does not let the trial run to the end: it is failed and re-queued as well."""
    study = _study(storage_url, budget=3)
    ran: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        return _objective(trial)

    worker = _worker(study, objective)
    ask = worker._next_trial

    def ask_then_signal(deadline: float) -> optuna.Trial | None:
        trial = ask(deadline)
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, outside the objective
        return trial

    worker._next_trial = ask_then_signal  # type: ignore[method-assign]
    stats = worker.run()
    assert ran == []
    assert stats.stopped_by == "signal SIGTERM"
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].user_attrs[FAIL_REASON_ATTR] == "interrupted (SIGTERM)"


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_interrupted_trial_failed_meanwhile_by_a_stale_check_is_requeued_once(
    storage_url: str,
) -> None:
    """A worker fails its interrupted baseline (SIGTERM) at the moment another worker's
    stale check fails it too (the heartbeat was late on a loaded machine): one copy is
    re-queued, not two, and the baseline seed finishes once."""
    study = _study(storage_url, budget=1, grace=1)
    study.enqueue_trial({"x": 0.25}, user_attrs={"hpo_baseline": True, "hpo_seed": 0})
    other = _reopen(study, storage_url, grace=1)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    _STORAGES[study].record_heartbeat(_trial_id(study, trial))
    time.sleep(2.1)  # > grace even with SQLite's whole-second CURRENT_TIMESTAMP: stale
    race = InTheWindow(study, lambda: optuna.storages.fail_stale_trials(other))
    recorder = TrialRecorder(study, lambda fn, _what: fn(), WorkerStats(), max_retry=3)
    recorder.fail(trial, "interrupted (SIGTERM)", retry=True)
    assert race.result() is None  # it did not raise, and failed nothing: the worker did
    copies = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == 0]
    assert [t.state for t in copies] == [TrialState.WAITING], study.get_trials()
    _worker(_reopen(study, storage_url), _objective).run(handle_signals=False)
    finished = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert [(t.params, t.user_attrs.get("hpo_seed")) for t in finished] == [({"x": 0.25}, 0)]


class _Clock:
    """The worker's clock, moved only by the test: a timeout decided by states, not speed."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)


def test_timeout_stops_before_the_budget(storage_url: str, monkeypatch) -> None:
    study = _study(storage_url, budget=50)
    clock = _Clock()
    monkeypatch.setattr(loop_module, "time", clock)

    def slow(trial: optuna.Trial) -> float:
        clock.now += 1.0  # the trial takes 1 s of the worker's clock, past its 0.5 s
        return _objective(trial)

    stats = _worker(study, slow, timeout=0.5).run(handle_signals=False)
    assert stats.stopped_by == "timeout" and stats.completed == 1


@pytest.mark.parametrize("writes_after", [False, True])
def test_trial_failed_by_another_worker_while_it_ran_is_discarded_not_counted(
    storage_url: str, writes_after: bool
) -> None:
    """Another worker's stale check fails the trial in the middle of its run (its heartbeat
    was late). Whether the run then just returns its value or is refused a write, its result
    is discarded, it is not counted as completed or as failed, and the copy the other worker
    queued runs once."""
    study = _study(storage_url, budget=1)
    other = _reopen(study, storage_url)
    calls = []

    def objective(trial: optuna.Trial) -> float:
        x = _objective(trial)
        calls.append(trial.number)
        if len(calls) == 1:  # the first run: failed meanwhile by the other worker
            # What the other worker's stale check does: fail it, then its callback's copy.
            storage, trial_id = _STORAGES[other], _trial_id(other, trial)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
            StaleTrialRequeue(max_retry=3)(other, storage.get_trial(trial_id))
            if writes_after:
                trial.set_user_attr("test_accuracy", 0.5)  # refused: UpdateFinishedTrialError
        return x

    stats = _worker(study, objective).run(handle_signals=False)
    assert calls == [0, 1]
    assert (stats.completed, stats.failed) == (1, 0)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].system_attrs["retry_history"] == [0] and trials[1].params == trials[0].params
    assert "test_accuracy" not in trials[0].user_attrs
