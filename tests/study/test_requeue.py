"""Re-queueing from public calls, reconciled: every FAIL trial with retries left ends with
exactly one copy that runs, whatever crashes or races.

Against every storage kind (SQLite always, PostgreSQL when HPO_TEST_POSTGRES_URL is set).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config.study import HeartbeatConfig
from hpo.storage.rdb import make_storage
from hpo.study.budget import BUDGET_ATTR, budget_rank, study_spent
from hpo.study.requeue import (
    DUPLICATE_RETRY,
    FAIL_REASON_ATTR,
    ORPHAN_REASON,
    RETRY_REASON_ATTR,
    STALE_REASON,
    StaleTrialRequeue,
    fail_orphans,
    fail_reason,
    reconcile,
    retry_template,
    superseded,
)
from hpo.worker.loop import Worker
from hpo.worker.outcomes import TrialRecorder, WorkerStats
from hpo.worker.progress import snapshot

pytestmark = pytest.mark.filterwarnings(
    "ignore:Heartbeat of storage:UserWarning", "ignore::optuna.exceptions.ExperimentalWarning"
)


def _storage(url: str, grace: int = 30) -> optuna.storages.RDBStorage:
    return make_storage(url, HeartbeatConfig(interval=1, grace=grace),
                        stale_trial_callback=StaleTrialRequeue(max_retry=3))


def _study(url: str, grace: int = 30, name: str | None = None) -> optuna.Study:
    return optuna.create_study(study_name=name or f"test-{uuid.uuid4().hex[:10]}",
                               storage=_storage(url, grace), direction="maximize",
                               sampler=optuna.samplers.RandomSampler(seed=0),
                               load_if_exists=True)


def _reopen(study: optuna.Study, url: str, grace: int = 30) -> tuple[optuna.Study, object]:
    storage = _storage(url, grace)
    return optuna.load_study(study_name=study.study_name, storage=storage), storage


def _running_baseline(study: optuna.Study) -> optuna.Trial:
    """A popped baseline trial that has started and recorded a partial result."""
    study.enqueue_trial({"x": 0.25}, user_attrs={"hpo_baseline": True, "hpo_seed": 3})
    trial = study.ask()
    assert trial.suggest_float("x", 0.0, 1.0) == 0.25
    trial.set_user_attr("test_accuracy", 0.5)  # a result: must not reach the copy
    trial.report(0.4, step=0)
    return trial


def _recorder(study: optuna.Study) -> TrialRecorder:
    return TrialRecorder(study, lambda fn, _what: fn(), WorkerStats(), max_retry=3)


def test_the_recorder_fails_and_queues_a_clean_copy(storage_url: str) -> None:
    study = _study(storage_url)
    trial = _running_baseline(study)
    _recorder(study).fail(trial, "interrupted (SIGTERM)", retry=True)
    _recorder(study).fail(trial, "interrupted (SIGTERM)", retry=True)  # again: no 2nd copy
    failed, copy = study.get_trials()
    assert failed.state == TrialState.FAIL and failed.datetime_complete is not None
    assert failed.user_attrs == {"hpo_baseline": True, "hpo_seed": 3, "test_accuracy": 0.5,
                                 FAIL_REASON_ATTR: "interrupted (SIGTERM)"}
    assert copy.number == 1 and copy.state == TrialState.WAITING
    assert copy.params == {"x": 0.25} and copy.distributions == failed.distributions
    assert copy.user_attrs == {"hpo_baseline": True, "hpo_seed": 3,
                               RETRY_REASON_ATTR: "interrupted (SIGTERM)"}
    assert copy.intermediate_values == {}
    assert copy.system_attrs["failed_trial"] == 0 and copy.system_attrs["retry_history"] == [0]
    assert reconcile(study, study.get_trials(), max_retry=3, min_age_s=0) == []


def test_retry_template_copies_inputs_and_lineage_only() -> None:
    failed = optuna.trial.create_trial(
        state=TrialState.FAIL,
        params={"x": 0.5},
        distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
        user_attrs={"hpo_seed": 7, "hpo_twin_of": 4, "test_accuracy": 0.1, "kink_hits": 3},
        system_attrs={"failed_trial": 2, "retry_history": [2]},
        intermediate_values={0: 0.3},
    )
    failed.number = 5
    template = retry_template(failed, max_retry=None)
    assert template.state == TrialState.WAITING and template.params == {"x": 0.5}
    assert template.user_attrs == {"hpo_seed": 7, "hpo_twin_of": 4,
                                   RETRY_REASON_ATTR: STALE_REASON}  # no reason: worker lost
    assert template.system_attrs == {"failed_trial": 2, "retry_history": [2, 5]}
    assert template.intermediate_values == {}
    assert retry_template(failed, max_retry=1) is None  # [2, 5]: retried once already
    assert fail_reason(failed) == STALE_REASON


def test_in_memory_storage_fails_and_requeues_too() -> None:
    study = optuna.create_study()
    trial = _running_baseline(study)
    _recorder(study).fail(trial, "error: RuntimeError: boom", retry=True)
    failed, copy = study.get_trials()
    assert failed.user_attrs[FAIL_REASON_ATTR] == "error: RuntimeError: boom"
    assert copy.state == TrialState.WAITING and copy.params == {"x": 0.25}


def test_a_fail_without_a_copy_is_repaired_once_it_is_old_enough(storage_url: str) -> None:
    """A worker died between tell(FAIL) and queueing the copy (the gap a single transaction
    used to close): the reconciler queues it, and only once."""
    study = _study(storage_url)
    trial = _running_baseline(study)
    trial.set_user_attr(FAIL_REASON_ATTR, "interrupted (SIGTERM)")
    study.tell(trial, state=TrialState.FAIL)
    trials = study.get_trials()
    assert reconcile(study, trials, max_retry=3) == []  # too recent: its worker queues it
    assert reconcile(study, trials, max_retry=3, min_age_s=0) == [0]
    assert reconcile(study, study.get_trials(), max_retry=3, min_age_s=0) == []
    failed, copy = study.get_trials()
    assert copy.state == TrialState.WAITING and copy.system_attrs["retry_history"] == [0]
    assert copy.user_attrs[RETRY_REASON_ATTR] == "interrupted (SIGTERM)"


def test_discarded_and_spent_trials_are_never_repaired(storage_url: str) -> None:
    study = _study(storage_url)
    discarded = study.ask()
    discarded.set_user_attr(FAIL_REASON_ATTR, "discarded: over budget")
    study.tell(discarded, state=TrialState.FAIL)
    spent = study.ask()
    study.tell(spent, state=TrialState.FAIL)
    assert reconcile(study, study.get_trials(), max_retry=0, min_age_s=0) == []
    assert len(study.get_trials()) == 2


def _tell_fail_then_die(url: str, study_name: str, number: int) -> None:
    """Child process: a worker that fails its trial and is killed before the copy."""
    storage = _storage(url)
    study = optuna.load_study(study_name=study_name, storage=storage)
    study.add_trial = lambda *a, **k: os._exit(9)  # dies where it would queue the copy
    trial = optuna.Trial(study, storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study_name), number))
    _recorder(study).fail(trial, "interrupted (SIGTERM)", retry=True)


def test_a_worker_killed_between_the_fail_and_the_copy_ends_with_exactly_its_budget(
    storage_url: str,
) -> None:
    study = _study(storage_url)
    study.set_user_attr(BUDGET_ATTR, 2)
    trial = _running_baseline(study)
    child = multiprocessing.get_context("spawn").Process(
        target=_tell_fail_then_die, args=(storage_url, study.study_name, trial.number)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 9
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]  # and no copy
    time.sleep(0.2)
    import hpo.study.requeue as requeue

    other, storage = _reopen(study, storage_url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(requeue, "RECONCILE_AFTER_S", 0.1)
        mp.setattr(requeue.reconcile, "__kwdefaults__", {"min_age_s": 0.1})
        Worker(other, lambda t: t.suggest_float("x", 0.0, 1.0), storage=storage,
               poll_interval=0.05).run(handle_signals=False)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert trials[1].params == {"x": 0.25} and trials[1].user_attrs["hpo_seed"] == 3
    assert trials[1].system_attrs["retry_history"] == [0]
    assert snapshot(study).fail_reasons == {"interrupted": 1}


def test_two_reconcilers_at_once_end_with_exactly_one_copy_running(storage_url: str) -> None:
    """Both read the trials before either queued its copy (the worst interleaving, without
    timing): two copies; the lower one runs, the other is discarded when popped and never
    counts."""
    study = _study(storage_url)
    study.set_user_attr(BUDGET_ATTR, 1)
    trial = _running_baseline(study)
    trial.set_user_attr(FAIL_REASON_ATTR, "error: RuntimeError: boom")
    study.tell(trial, state=TrialState.FAIL)
    other, storage = _reopen(study, storage_url)
    mine, theirs = study.get_trials(), other.get_trials()
    assert reconcile(study, mine, max_retry=3, min_age_s=0) == [0]
    assert reconcile(other, theirs, max_retry=3, min_age_s=0) == [0]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING,
                                         TrialState.WAITING]
    assert superseded(trials) == {2}
    assert budget_rank(trials, 3) == 1  # the duplicate holds no slot
    ran: list[int] = []
    workers = [
        Worker(s, lambda t: ran.append(t.number) or t.suggest_float("x", 0, 1), storage=st,
               poll_interval=0.05)
        for s, st in ((study, None), (other, storage))
    ]
    threads = [threading.Thread(target=w.run, kwargs={"handle_signals": False})
               for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    trials = study.get_trials()
    assert ran == [1]
    assert trials[2].state == TrialState.FAIL
    assert trials[2].user_attrs[FAIL_REASON_ATTR] == DUPLICATE_RETRY
    assert study_spent(trials, 1)
    assert reconcile(study, trials, max_retry=3, min_age_s=0) == []  # discarded: not retried


def test_a_stale_trial_is_failed_by_optuna_and_requeued_by_the_callback(
    storage_url: str,
) -> None:
    study = _study(storage_url, grace=1)
    trial = _running_baseline(study)
    other, storage = _reopen(study, storage_url, grace=1)
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number))
    time.sleep(2.1)  # > grace even with SQLite's whole-second CURRENT_TIMESTAMP
    optuna.storages.fail_stale_trials(other)
    optuna.storages.fail_stale_trials(study)  # a second check: nothing more
    failed, copy = study.get_trials()
    assert failed.state == TrialState.FAIL and FAIL_REASON_ATTR not in failed.user_attrs
    assert fail_reason(failed) == STALE_REASON
    assert copy.state == TrialState.WAITING and copy.params == {"x": 0.25}
    assert copy.user_attrs == {"hpo_baseline": True, "hpo_seed": 3,
                               RETRY_REASON_ATTR: STALE_REASON}
    assert snapshot(study).fail_reasons == {"worker lost": 1}


def test_a_trial_without_a_worker_marker_is_failed_once_after_the_grace(
    storage_url: str,
) -> None:
    """Killed between ask and its first heartbeat: no heartbeat row, no hpo_worker."""
    study = _study(storage_url, grace=1)
    trial = _running_baseline(study)
    patient, slow = _reopen(study, storage_url, grace=30)
    assert fail_orphans(patient, slow, patient.get_trials(), max_retry=3) == []  # too young
    other, storage = _reopen(study, storage_url, grace=1)
    time.sleep(1.2)
    trials = other.get_trials()
    assert fail_orphans(other, storage, trials, max_retry=3) == [trial.number]
    assert fail_orphans(study, storage, trials, max_retry=3) == []  # stale read: refused
    failed, copy = study.get_trials()
    assert failed.state == TrialState.FAIL and fail_reason(failed) == ORPHAN_REASON
    assert copy.state == TrialState.WAITING and copy.user_attrs["hpo_seed"] == 3
