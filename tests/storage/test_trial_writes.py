"""Writes with plain SQL (hpo.storage.trial_writes) store what Optuna's ORM writes store and
refuse what it refuses."""

from __future__ import annotations

import math
import uuid

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState

from hpo.storage.rdb import make_storage


def _two_trials(storage: RDBStorage) -> tuple[optuna.Study, int, int]:
    """A study with two running trials: one written by Optuna's code, one by ours."""
    study = optuna.create_study(storage=storage, study_name=f"writes-{uuid.uuid4().hex[:12]}")
    return study, study.ask()._trial_id, study.ask()._trial_id


def _comparable(storage: RDBStorage, trial_id: int) -> tuple:
    t = storage.get_trial(trial_id)
    values = {k: "NaN" if math.isnan(v) else v for k, v in t.intermediate_values.items()}
    return t.params, t.distributions, values, t.state


DISTRIBUTIONS = [
    ("lr", 0.015, FloatDistribution(1e-4, 1e-1, log=True)),
    ("width", 64.0, IntDistribution(16, 128, log=True)),
    ("precision", 1.0, CategoricalDistribution(["float32", "bfloat16", None])),
]


def test_params_and_intermediate_values_are_stored_as_optuna_stores_them(storage_url):
    storage = make_storage(storage_url)
    _study, theirs, ours = _two_trials(storage)
    for name, internal, distribution in DISTRIBUTIONS:
        RDBStorage.set_trial_param(storage, theirs, name, internal, distribution)
        storage.set_trial_param(ours, name, internal, distribution)
    for step, value in enumerate([0.5, math.nan, math.inf, -math.inf, 0.25]):
        RDBStorage.set_trial_intermediate_value(storage, theirs, step, value)
        storage.set_trial_intermediate_value(ours, step, value)
    # A step reported again is overwritten, by both.
    RDBStorage.set_trial_intermediate_value(storage, theirs, 1, 0.75)
    storage.set_trial_intermediate_value(ours, 1, 0.75)
    assert _comparable(storage, ours) == _comparable(storage, theirs)
    assert storage.get_trial(ours).intermediate_values[1] == 0.75
    assert storage.get_trial(ours).params == {"lr": 0.015, "width": 64, "precision": "bfloat16"}


def test_a_parameter_set_twice_keeps_its_first_value(storage_url):
    storage = make_storage(storage_url)
    _study, _theirs, ours = _two_trials(storage)
    distribution = FloatDistribution(0.0, 1.0)
    storage.set_trial_param(ours, "x", 0.25, distribution)
    storage.set_trial_param(ours, "x", 0.75, distribution)  # Optuna ignores the duplicate
    assert storage.get_trial(ours).params == {"x": 0.25}


def test_the_same_errors_as_optuna(storage_url):
    storage = make_storage(storage_url)
    study, theirs, ours = _two_trials(storage)
    storage.set_trial_param(theirs, "x", 0.5, FloatDistribution(0.0, 1.0))
    # A distribution that contradicts the study's earlier ones: with and without the
    # cached one (Optuna's cache passes it; a plain storage looks it up).
    with pytest.raises(ValueError):
        storage.set_trial_param(ours, "x", 1.0, CategoricalDistribution(["a", "b"]))
    with pytest.raises(ValueError):
        storage._set_trial_param(ours, "x", 1.0, CategoricalDistribution(["a", "b"]),
                                 FloatDistribution(0.0, 1.0))
    missing = 10**9
    for write in (
        lambda t: storage.set_trial_param(t, "y", 0.5, FloatDistribution(0.0, 1.0)),
        lambda t: storage.set_trial_intermediate_value(t, 0, 0.5),
    ):
        with pytest.raises(KeyError):
            write(missing)
    study.tell(study.trials[1].number, 0.5)  # `ours` is finished now
    assert storage.get_trial(ours).state == TrialState.COMPLETE
    for write in (
        lambda t: storage.set_trial_param(t, "y", 0.5, FloatDistribution(0.0, 1.0)),
        lambda t: storage.set_trial_intermediate_value(t, 0, 0.5),
    ):
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            write(ours)
    assert "y" not in storage.get_trial(ours).params


def test_heartbeat_is_one_row_with_the_database_clock(storage_url):
    storage = make_storage(storage_url)
    _study, _theirs, ours = _two_trials(storage)

    def beats() -> list:
        with _create_scoped_session(storage.scoped_session) as session:
            rows = session.query(models.TrialHeartbeatModel).filter_by(trial_id=ours).all()
            return [r.heartbeat for r in rows]

    storage.record_heartbeat(ours)
    first = beats()
    storage.record_heartbeat(ours)
    second = beats()
    assert len(first) == len(second) == 1
    assert second[0] >= first[0]
    with _create_scoped_session(storage.scoped_session) as session:
        import sqlalchemy

        now = session.execute(sqlalchemy.select(sqlalchemy.func.current_timestamp())).scalar()
    if isinstance(now, str):  # SQLite returns text
        from datetime import datetime

        now = datetime.fromisoformat(now)
    assert abs((now.replace(tzinfo=None) - second[0]).total_seconds()) < 60
