"""Failing a trial and queueing its copy is one transaction: both or neither, whatever crashes.

Against every storage kind (SQLite always, PostgreSQL when HPO_TEST_POSTGRES_URL is set).
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config.study import HeartbeatConfig
from hpo.storage.rdb import make_storage
from hpo.study.requeue import (
    FAIL_REASON_ATTR,
    STALE_REASON,
    atomic_backend,
    fail_stale_trials,
    retry_template,
)
from hpo.worker.outcomes import TrialRecorder, WorkerStats
from hpo.worker.progress import snapshot
from tests._race import InTheWindow

pytestmark = pytest.mark.filterwarnings(
    "ignore:Heartbeat of storage:UserWarning", "ignore::optuna.exceptions.ExperimentalWarning"
)


def _study(url: str, grace: int = 30) -> optuna.Study:
    storage = make_storage(url, HeartbeatConfig(interval=1, grace=grace))
    return optuna.create_study(study_name=f"test-{uuid.uuid4().hex[:10]}", storage=storage)


def _reopen(study: optuna.Study, url: str, grace: int = 30) -> optuna.Study:
    storage = make_storage(url, HeartbeatConfig(interval=1, grace=grace))
    return optuna.load_study(study_name=study.study_name, storage=storage)


def _running_baseline(study: optuna.Study) -> optuna.Trial:
    """A popped baseline trial that has started and recorded a partial result."""
    study.enqueue_trial({"x": 0.25}, user_attrs={"hpo_baseline": True, "hpo_seed": 3})
    trial = study.ask()
    assert trial.suggest_float("x", 0.0, 1.0) == 0.25
    trial.set_user_attr("test_accuracy", 0.5)  # a result: must not reach the copy
    trial.report(0.4, step=0)
    return trial


def test_fail_and_requeue_fails_the_trial_and_queues_a_clean_copy(storage_url: str) -> None:
    study = _study(storage_url)
    trial = _running_baseline(study)
    frozen, copy_number = atomic_backend(study).fail_and_requeue(
        trial._trial_id, reason="interrupted (SIGTERM)", max_retry=2
    )
    assert frozen.state == TrialState.FAIL and frozen.number == trial.number
    failed, copy = study.get_trials()
    assert failed.state == TrialState.FAIL and failed.datetime_complete is not None
    assert failed.user_attrs == {"hpo_baseline": True, "hpo_seed": 3, "test_accuracy": 0.5,
                                 FAIL_REASON_ATTR: "interrupted (SIGTERM)"}
    assert copy.number == copy_number == 1 and copy.state == TrialState.WAITING
    assert copy.params == {"x": 0.25} and copy.distributions == failed.distributions
    assert copy.user_attrs == {"hpo_baseline": True, "hpo_seed": 3}  # inputs, no results
    assert copy.intermediate_values == {}
    assert copy.system_attrs["failed_trial"] == 0 and copy.system_attrs["retry_history"] == [0]
    # The copy runs with the same parameters, and failing it again extends its lineage.
    rerun = study.ask()
    assert rerun.number == 1 and rerun.suggest_float("x", 0.0, 1.0) == 0.25
    _, second = atomic_backend(study).fail_and_requeue(rerun._trial_id, reason=None,
                                                       max_retry=2)
    assert study.get_trials()[second].system_attrs["retry_history"] == [0, 1]
    # A third failure exceeds max_retry=2: failed, no copy.
    third = study.ask()
    _, none = atomic_backend(study).fail_and_requeue(third._trial_id, reason=None, max_retry=2)
    assert none is None
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * 3


def test_a_finished_trial_is_refused_and_nothing_changes(storage_url: str) -> None:
    study = _study(storage_url)
    trial = _running_baseline(study)
    study.tell(trial, 0.9)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        atomic_backend(study).fail_and_requeue(trial._trial_id, reason="x", max_retry=None)
    [done] = study.get_trials()
    assert done.state == TrialState.COMPLETE and FAIL_REASON_ATTR not in done.user_attrs


def test_an_error_while_queueing_the_copy_leaves_the_trial_running(
    storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both or neither: when the copy cannot be written the failure is rolled back too, so
    the trial stays RUNNING and the heartbeat check re-queues it later."""
    study = _study(storage_url)
    trial = _running_baseline(study)
    backend = atomic_backend(study)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("connection lost while inserting the copy")

    monkeypatch.setattr(backend, "_get_prepared_new_trial", broken)
    with pytest.raises(RuntimeError, match="inserting the copy"):
        backend.fail_and_requeue(trial._trial_id, reason="interrupted (SIGINT)", max_retry=3)
    [still] = _reopen(study, storage_url).get_trials()
    assert still.state == TrialState.RUNNING and FAIL_REASON_ATTR not in still.user_attrs


def _die_inside(url: str, study_name: str, trial_id: int) -> None:
    """Child process: start failing the trial, then die (SIGKILL-like) before the commit."""
    storage = make_storage(url, HeartbeatConfig(interval=1, grace=30))
    study = optuna.load_study(study_name=study_name, storage=storage)
    backend = atomic_backend(study)
    insert = backend._get_prepared_new_trial

    def insert_then_die(*args: object, **kwargs: object) -> None:
        insert(*args, **kwargs)  # the copy is written in the transaction ...
        os._exit(9)  # ... and the process dies before it commits

    backend._get_prepared_new_trial = insert_then_die
    backend.fail_and_requeue(trial_id, reason="interrupted (SIGTERM)", max_retry=3)


def test_a_worker_killed_between_the_fail_and_the_copy_loses_nothing(storage_url: str) -> None:
    """The gap this closes: a process killed after failing the trial and before queueing
    the copy used to leave a FAIL trial without a copy (a lost baseline seed). Now the
    trial stays RUNNING, and the stale check fails it and queues exactly one copy."""
    study = _study(storage_url, grace=1)
    trial = _running_baseline(study)
    study._storage.record_heartbeat(trial._trial_id)
    child = multiprocessing.get_context("spawn").Process(
        target=_die_inside, args=(storage_url, study.study_name, trial._trial_id)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 9
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]
    time.sleep(2.1)  # > grace even with SQLite's whole-second CURRENT_TIMESTAMP
    other = _reopen(study, storage_url, grace=1)
    assert fail_stale_trials(other, max_retry=3) == [trial._trial_id]
    failed, copy = study.get_trials()
    assert failed.state == TrialState.FAIL and failed.user_attrs[FAIL_REASON_ATTR] == STALE_REASON
    assert copy.state == TrialState.WAITING and copy.params == {"x": 0.25}
    assert copy.user_attrs == {"hpo_baseline": True, "hpo_seed": 3}
    assert snapshot(study).fail_reasons == {"worker lost": 1}


def test_two_stale_checks_at_once_queue_one_copy(storage_url: str) -> None:
    study = _study(storage_url, grace=1)
    trial = _running_baseline(study)
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(2.1)
    other = _reopen(study, storage_url, grace=1)
    race = InTheWindow(study, lambda: fail_stale_trials(other, max_retry=3))
    mine = fail_stale_trials(study, max_retry=3)
    theirs = race.result()
    assert sorted([*mine, *theirs]) == [trial._trial_id]  # exactly one of them failed it
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]


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
    assert template.user_attrs == {"hpo_seed": 7, "hpo_twin_of": 4}
    assert template.system_attrs == {"failed_trial": 2, "retry_history": [2, 5]}
    assert template.intermediate_values == {}
    assert retry_template(failed, max_retry=1) is None  # [2, 5]: retried once already


def test_a_storage_without_the_atomic_path_still_fails_and_requeues() -> None:
    """Optuna's in-memory storage (no SQL transaction): tell FAIL, then add the copy."""
    study = optuna.create_study()
    trial = _running_baseline(study)
    assert atomic_backend(study) is None
    recorder = TrialRecorder(study, lambda fn, _what: fn(), WorkerStats(), max_retry=3)
    recorder.fail(trial, "error: RuntimeError: boom", retry=True)
    failed, copy = study.get_trials()
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs[FAIL_REASON_ATTR] == "error: RuntimeError: boom"
    assert copy.state == TrialState.WAITING and copy.params == {"x": 0.25}
    assert copy.user_attrs == {"hpo_baseline": True, "hpo_seed": 3}


def test_the_recorder_fails_and_requeues_in_one_transaction(storage_url: str) -> None:
    study = _study(storage_url)
    trial = _running_baseline(study)
    recorder = TrialRecorder(study, lambda fn, _what: fn(), WorkerStats(), max_retry=3)
    recorder.fail(trial, "interrupted (SIGINT)", retry=True)
    recorder.fail(trial, "interrupted (SIGINT)", retry=True)  # a retried call: no 2nd copy
    failed, copy = study.get_trials()
    assert failed.user_attrs[FAIL_REASON_ATTR] == "interrupted (SIGINT)"
    assert copy.state == TrialState.WAITING and copy.system_attrs["retry_history"] == [0]
