"""Storage URLs -> RDB storages: SQLite pragmas, PostgreSQL pools, heartbeats, masked errors."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config import HeartbeatConfig
from hpo.errors import StorageError, UsageError
from hpo.service.storage import (
    SQLITE_BUSY_TIMEOUT_S,
    default_storage_url,
    make_storage,
    mask_url,
    resolve_storage_url,
)

POSTGRES_ENV = "HPO_TEST_POSTGRES_URL"  # e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/test


def unique_name() -> str:
    return f"s1-test-{uuid.uuid4().hex[:12]}"


def _delete(url: str, name: str) -> None:
    if not url.startswith("sqlite"):
        optuna.delete_study(study_name=name, storage=make_storage(url))


# -- URL resolution and masking --------------------------------------------------------
def test_resolve_storage_url_precedence(monkeypatch):
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    assert resolve_storage_url(None, None, name="s") == "sqlite:///storage/s.db"
    assert resolve_storage_url("sqlite:///cfg.db", None, name="s") == "sqlite:///cfg.db"
    monkeypatch.setenv("HPO_STORAGE", "sqlite:///env.db")
    assert resolve_storage_url("sqlite:///cfg.db", None) == "sqlite:///env.db"
    assert resolve_storage_url("sqlite:///cfg.db", "sqlite:///flag.db") == "sqlite:///flag.db"


def test_resolve_storage_url_without_anything_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    with pytest.raises(UsageError, match="--storage"):
        resolve_storage_url(None, None)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg2://alice:s3cret@db:5432/hpo", "postgresql+psycopg2://alice:***@db:5432/hpo"),
        ("postgresql://alice:p%40ss@db/hpo", "postgresql://alice:***@db/hpo"),
        ("postgresql+psycopg2://postgres@127.0.0.1:5432/test", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"),
        ("sqlite:///storage/x.db", "sqlite:///storage/x.db"),
        ("bad url://alice:s3cret@db", "bad url://alice:***@db"),
    ],
)  # fmt: skip
def test_mask_url(url, masked):
    assert mask_url(url) == masked


# -- SQLite ------------------------------------------------------------------------------
def test_sqlite_creates_parent_folder_wal_and_busy_timeout(tmp_path):
    db = tmp_path / "a" / "b" / "study.db"
    storage = make_storage(f"sqlite:///{db}")
    assert db.is_file()
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with storage.engine.connect() as con:
        timeout_ms = con.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert timeout_ms == SQLITE_BUSY_TIMEOUT_S * 1000


def test_default_sqlite_url_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_storage(default_storage_url("quick"))
    assert (tmp_path / "storage" / "quick.db").is_file()


def test_sqlite_unwritable_path_is_a_storage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot open SQLite storage"):
        make_storage(f"sqlite:///{blocker}/study.db")


def test_sqlite_concurrent_writers_and_a_reader(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    optuna.create_study(study_name="c", storage=make_storage(url))
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            study = optuna.load_study(study_name="c", storage=make_storage(url))
            for _ in range(8):
                trial = study.ask()
                trial.set_user_attr("x", trial.suggest_float("x", 0.0, 1.0))
                study.tell(trial, 1.0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            storage = make_storage(url)
            for _ in range(20):
                storage.get_all_trials(storage.get_study_id_from_name("c"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)] + [
        threading.Thread(target=reader)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    trials = optuna.load_study(study_name="c", storage=url).trials
    assert len(trials) == 32 and all(t.state == TrialState.COMPLETE for t in trials)


# -- bad URLs ----------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["sqlit:///x.db", "nonsense", "foo+bar://u@h/db"])
def test_bad_url_is_a_usage_error(url):
    with pytest.raises(UsageError) as info:
        make_storage(url)
    assert not isinstance(info.value, StorageError) and info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_unreachable_postgres_is_a_storage_error_without_the_password():
    url = "postgresql+psycopg2://alice:s3cret-pw@127.0.0.1:1/test"
    with pytest.raises(StorageError) as info:
        make_storage(url)
    msg = str(info.value)
    assert "s3cret-pw" not in msg and "alice:***@127.0.0.1:1" in msg
    assert "\n" not in msg and info.value.exit_code == 1


# -- every backend -----------------------------------------------------------------------
def test_storage_round_trip(storage_url):
    name = unique_name()
    storage = make_storage(storage_url)
    try:
        study = optuna.create_study(study_name=name, storage=storage)
        study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=2)
        again = optuna.load_study(study_name=name, storage=make_storage(storage_url))
        assert [t.params for t in again.trials] == [t.params for t in study.trials]
    finally:
        _delete(storage_url, name)


def test_postgres_uses_a_small_pre_pinged_pool():
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"set {POSTGRES_ENV} to run against PostgreSQL")
    storage = make_storage(url)
    assert storage.engine.pool.size() == 2
    assert storage.engine.pool._pre_ping


def test_without_heartbeat_config_no_heartbeat(storage_url):
    storage = make_storage(storage_url)
    assert storage.get_heartbeat_interval() is None


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::optuna.exceptions.ExperimentalWarning")
def test_stale_trial_is_failed_and_requeued_with_the_same_params(storage_url):
    """A worker killed mid-trial stops sending heartbeats: after the grace period the next
    worker fails its trial and re-queues one with the same parameters and user attrs."""
    name = unique_name()
    storage = make_storage(storage_url, HeartbeatConfig(interval=1, grace=1, max_retry=2))
    try:
        study = optuna.create_study(study_name=name, storage=storage)
        study.enqueue_trial({"x": 0.25}, user_attrs={"hpo_baseline": True, "hpo_seed": 1})
        trial = study.ask()  # the "killed" worker's trial: one heartbeat, then silence
        assert trial.suggest_float("x", 0.0, 1.0) == 0.25
        storage.record_heartbeat(trial._trial_id)
        time.sleep(2.1)  # > grace even with SQLite's whole-second CURRENT_TIMESTAMP
        optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
        assert trials[1].params == {"x": 0.25}
        assert trials[1].user_attrs == {"hpo_baseline": True, "hpo_seed": 1}
    finally:
        _delete(storage_url, name)
