"""Trials read with plain SQL (hpo.storage.trial_reads) equal what Optuna's ORM path builds."""

from __future__ import annotations

import math
import uuid

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from hpo.storage.rdb import make_storage
from hpo.storage.trial_reads import read_trial, read_trials

ORM_GET_TRIALS = RDBStorage._get_trials  # Optuna's own, which make_storage's storage replaces
ORM_GET_TRIAL = RDBStorage.get_trial


def _plain(value):
    """A comparable form: NaN equals NaN, dicts compare whatever their order."""
    if isinstance(value, optuna.trial.FrozenTrial):
        return _plain(vars(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def same(got, expected) -> bool:
    return _plain(got) == _plain(expected)


def _varied_study(storage: RDBStorage, directions: list[str]) -> optuna.Study:
    """Trials in every state, with every kind of stored value."""
    study = optuna.create_study(storage=storage, study_name=f"reads-{uuid.uuid4().hex[:12]}",
                                directions=directions)
    n = len(directions)
    for i in range(7):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_int("width", 16, 128, log=True)
        trial.suggest_categorical("precision", ["float32", "bfloat16", None])
        trial.suggest_float("lr", 1e-4, 1e-1, step=1e-4)
        trial.set_user_attr("curve", [0.5, None, {"nested": ["a", 1]}])
        trial.set_user_attr("seed", i)
        study._storage.set_trial_system_attr(trial._trial_id, "note", {"k": [i, "v"]})
        if n == 1:
            for step, value in enumerate([0.25 * i, math.nan, math.inf, -math.inf]):
                trial.report(value, step)
        if i == 0:
            study.tell(trial, [math.inf, -math.inf][:n] if n > 1 else math.inf)
        elif i == 1:
            study.tell(trial, state=TrialState.FAIL)
        elif i == 2 and n == 1:
            study.tell(trial, state=TrialState.PRUNED)
        elif i < 5:
            study.tell(trial, [0.1 * i] * n if n > 1 else 0.1 * i)
        # the rest stay RUNNING
    study.enqueue_trial({"x": 0.5, "width": 32}, user_attrs={"hpo_baseline": True})
    return study


@pytest.mark.parametrize("directions", [["maximize"], ["minimize", "maximize"]])
def test_reads_equal_optunas_orm_path(storage_url, directions):
    storage = make_storage(storage_url)
    study = _varied_study(storage, directions)
    sid = study._study_id
    every = ORM_GET_TRIALS(storage, sid, None, set(), -1)
    assert len(every) == 8
    assert same(read_trials(storage, sid, None, set(), -1), every)
    for trial in every:
        assert same(read_trial(storage, trial._trial_id), ORM_GET_TRIAL(storage, trial._trial_id))
    # What Optuna's cache asks for: the unfinished trials it holds, and any newer one.
    unfinished = {t._trial_id for t in every if not t.state.is_finished()}
    last_finished = max(t._trial_id for t in every if t.state.is_finished())
    for included, above in [(unfinished, last_finished), (set(), last_finished),
                            (unfinished, -1), ({every[0]._trial_id}, every[3]._trial_id)]:
        expected = ORM_GET_TRIALS(storage, sid, None, included, above)
        assert same(read_trials(storage, sid, None, included, above), expected)
    for states in [(TrialState.COMPLETE,), (TrialState.WAITING,),
                   (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]:
        expected = ORM_GET_TRIALS(storage, sid, states, unfinished, last_finished)
        assert same(read_trials(storage, sid, states, unfinished, last_finished), expected)
        assert same(read_trials(storage, sid, states, set(), -1),
                    ORM_GET_TRIALS(storage, sid, states, set(), -1))


def test_the_worker_storage_serves_them_through_optunas_cache(storage_url):
    """make_storage's storage is what load_study wraps in Optuna's cache: the study's trials
    (cached finished ones and re-read running ones) equal a plain RDBStorage's."""
    storage = make_storage(storage_url)
    study = _varied_study(storage, ["maximize"])
    loaded = optuna.load_study(study_name=study.study_name, storage=storage)
    plain = optuna.load_study(study_name=study.study_name,
                              storage=RDBStorage(storage.url, engine_kwargs=storage.engine_kwargs))
    assert same(loaded.get_trials(), plain.get_trials())
    running = next(t for t in loaded.get_trials() if t.state == TrialState.RUNNING)
    loaded.tell(running.number, 0.75)
    assert same(loaded.get_trials(), plain.get_trials())
    assert same(loaded.get_trials(states=(TrialState.WAITING,)),
                plain.get_trials(states=(TrialState.WAITING,)))


def test_missing_study_or_trial_is_a_key_error(storage_url):
    storage = make_storage(storage_url)
    with pytest.raises(KeyError):
        read_trials(storage, 10**9, None, set(), -1)
    with pytest.raises(KeyError):
        read_trial(storage, 10**9)
    study = optuna.create_study(storage=storage, study_name=f"reads-{uuid.uuid4().hex[:12]}")
    assert read_trials(storage, study._study_id, None, set(), -1) == []


def test_one_study_user_attr(storage_url):
    storage = make_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name=f"reads-{uuid.uuid4().hex[:12]}")
    study.set_user_attr("hpo_budget", 12)
    study.set_user_attr("hpo_config", {"name": "x", "train": {"epochs": [1, 2.5, None]}})
    sid = study._study_id
    for key in ("hpo_budget", "hpo_config"):
        assert storage.read_study_user_attr(sid, key) == storage.get_study_user_attrs(sid)[key]
    assert storage.read_study_user_attr(sid, "unset") is None
    with pytest.raises(KeyError):
        storage.read_study_user_attr(10**9, "hpo_budget")


def _seeded_search(storage: RDBStorage) -> list[tuple]:
    """A seeded TPE search (constant liar sees the trials left running) with a median
    pruner: the sequence of suggested params and pruning decisions."""
    study = optuna.create_study(
        storage=storage, study_name=f"reads-{uuid.uuid4().hex[:12]}", direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
    )
    seen = []
    for i in range(14):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        width = trial.suggest_int("width", 16, 128, log=True)
        kind = trial.suggest_categorical("kind", ["a", "b"])
        trial.report(x, 0)
        seen.append((x, width, kind, trial.should_prune()))
        if i % 5 == 4:
            continue  # left RUNNING
        study.tell(trial, x * (1.0 if kind == "a" else 0.5))
    return seen


def test_tpe_and_the_pruner_decide_as_on_optunas_own_storage(storage_url):
    ours = make_storage(storage_url)
    plain = RDBStorage(ours.url, engine_kwargs=ours.engine_kwargs)
    assert _seeded_search(ours) == _seeded_search(plain)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_stale_trials_are_the_ones_optuna_finds(storage_url):
    """RUNNING trials whose heartbeat is older than the grace period, by the database clock;
    never a trial without a heartbeat (make_storage's orphan check handles those) or a
    finished one."""
    from datetime import timedelta

    import sqlalchemy
    from optuna.storages._rdb import models

    from hpo.config.study import HeartbeatConfig
    from hpo.storage.trial_reads import PlainSqlTrialReads

    storage = make_storage(storage_url, HeartbeatConfig(interval=5, grace=30))
    study = optuna.create_study(storage=storage, study_name=f"reads-{uuid.uuid4().hex[:12]}")
    ids = [study.ask()._trial_id for _ in range(5)]
    for trial_id in ids[:4]:
        storage.record_heartbeat(trial_id)
    table = models.TrialHeartbeatModel.__table__
    with storage.engine.begin() as con:
        now = con.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar().replace(tzinfo=None)
        for trial_id, age in [(ids[0], 3600), (ids[1], 31), (ids[3], 3600)]:
            con.execute(table.update().where(table.c.trial_id == trial_id)
                        .values(heartbeat=now - timedelta(seconds=age)))
    study.tell(study.trials[3].number, 0.5)  # finished: never stale
    expected = RDBStorage._get_stale_trial_ids(storage, study._study_id)
    assert PlainSqlTrialReads._get_stale_trial_ids(storage, study._study_id) == sorted(expected)
    assert sorted(expected) == [ids[0], ids[1]]
