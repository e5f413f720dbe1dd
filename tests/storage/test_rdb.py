"""Storage URLs -> RDB storages: SQLite pragmas, PostgreSQL pools, heartbeats, masked errors."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import sqlalchemy.pool
from optuna.trial import TrialState

from hpo.config.study import HeartbeatConfig
from hpo.errors import StorageError, UsageError
from hpo.storage.rdb import SQLITE_BUSY_TIMEOUT_S, is_finished_trial_error, make_storage
from hpo.storage.urls import default_storage_url, mask_url, resolve_storage_url
from tests._race import InTheWindow

POSTGRES_ENV = "HPO_TEST_POSTGRES_URL"  # e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/test


def unique_name() -> str:
    return f"s1-test-{uuid.uuid4().hex[:12]}"


def _delete(url: str, name: str) -> None:
    if not url.startswith("sqlite"):
        optuna.delete_study(study_name=name, storage=make_storage(url))


# -- URL resolution and masking --------------------------------------------------------
def test_resolve_storage_url_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    assert resolve_storage_url(None, None) == f"sqlite:///{tmp_path}/storage/hpo.db"
    assert resolve_storage_url("sqlite:///cfg.db", None) == "sqlite:///cfg.db"
    monkeypatch.setenv("HPO_STORAGE", "sqlite:///env.db")
    assert resolve_storage_url("sqlite:///cfg.db", None) == "sqlite:///env.db"
    assert resolve_storage_url(None, None) == "sqlite:///env.db"
    assert resolve_storage_url("sqlite:///cfg.db", "sqlite:///flag.db") == "sqlite:///flag.db"


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


def test_sqlite_transactions_hold_the_write_lock_from_their_start(tmp_path):
    """BEGIN IMMEDIATE: even a transaction that has only read holds the write lock, so
    Optuna's read-check-write of a trial state is one step (SQLite ignores FOR UPDATE)."""
    db = tmp_path / "lock.db"
    storage = make_storage(f"sqlite:///{db}")
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    with storage.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1").scalar()  # a read, inside the begun transaction
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # released with the transaction
    other.execute("ROLLBACK")
    other.close()


def test_sqlite_in_wal_mode_syncs_at_checkpoints_only(tmp_path):
    """synchronous=NORMAL (1) on every connection to a file in WAL mode (no fsync per
    commit); a file in another journal mode keeps FULL (2), where NORMAL is not crash-safe."""
    db = tmp_path / "study.db"
    storage = make_storage(f"sqlite:///{db}")

    def synchronous() -> int:
        with storage.engine.connect() as con:
            return con.exec_driver_sql("PRAGMA synchronous").scalar()

    assert synchronous() == 1
    storage.engine.dispose()
    assert synchronous() == 1  # a new connection too
    storage.engine.dispose()  # leaving WAL needs the only connection
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    con.close()
    storage.engine.dispose()
    assert synchronous() == 2


def test_default_sqlite_url_is_the_project_database(tmp_path, monkeypatch):
    (tmp_path / "study_configs" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "study_configs" / "sub")
    optuna.create_study(study_name="a", storage=make_storage(default_storage_url()))
    optuna.create_study(study_name="b", storage=make_storage(default_storage_url()))
    db = tmp_path / "storage" / "hpo.db"
    assert sorted(optuna.get_all_study_names(f"sqlite:///{db}")) == ["a", "b"]
    assert sorted(p.name for p in tmp_path.rglob("*.db")) == ["hpo.db"]


def test_sqlite_unwritable_path_is_a_storage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="'.*file' is a file, not a folder") as info:
        make_storage(f"sqlite:///{blocker}/sub/study.db")
    assert "fix: move or rename that file" in str(info.value)
    assert blocker.read_text() == "not a folder" and list(tmp_path.iterdir()) == [blocker]


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


def test_postgres_pool_is_small_and_replaces_connections_the_server_dropped():
    """A server restart or failover kills the pooled connections; the health check (a
    ping at checkout) finds them dead and the pool opens new ones, unseen by the caller."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"set {POSTGRES_ENV} to run against PostgreSQL")
    storage = make_storage(url)
    assert storage.engine.pool.size() == 2 and storage.engine.pool._pre_ping
    storage.get_all_studies()
    pooled = [record.dbapi_connection.info.backend_pid
              for record in list(storage.engine.pool._pool.queue)]
    assert pooled
    killer = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with killer.connect() as conn:
        for pid in pooled:
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar()
    killer.dispose()
    for _ in range(len(pooled) + 1):  # every dead connection is handed out once
        storage.get_all_studies()  # no error: no retry needed
    now = [record.dbapi_connection.info.backend_pid
           for record in list(storage.engine.pool._pool.queue)
           if record.dbapi_connection is not None]
    assert now and not set(pooled) & set(now)


def test_without_heartbeat_config_no_heartbeat(storage_url):
    storage = make_storage(storage_url)
    assert storage.get_heartbeat_interval() is None


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::optuna.exceptions.ExperimentalWarning")
def test_stale_trial_is_failed_and_requeued_with_the_same_params(storage_url):
    """A worker killed mid-trial stops sending heartbeats: after the grace period the next
    worker fails its trial and re-queues one with the same parameters and user attrs."""
    name = unique_name()
    from hpo.study.requeue import RETRY_REASON_ATTR, STALE_REASON, StaleTrialRequeue

    storage = make_storage(storage_url, HeartbeatConfig(interval=1, grace=1, max_retry=2),
                           stale_trial_callback=StaleTrialRequeue(max_retry=2))
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
        assert trials[1].user_attrs == {"hpo_baseline": True, "hpo_seed": 1,
                                        RETRY_REASON_ATTR: STALE_REASON}
    finally:
        _delete(storage_url, name)


# -- state changes are atomic: of two racing changes from one state, exactly one wins ------
def _two_storages(url: str) -> tuple[optuna.Study, optuna.Study]:
    """One study seen through two storages (two engines: two worker processes)."""
    name = unique_name()
    mine = optuna.create_study(study_name=name, storage=make_storage(url))
    other = optuna.load_study(study_name=name, storage=make_storage(url))
    return mine, other


def test_two_workers_never_pop_the_same_waiting_trial(storage_url):
    """Two workers asking at once: the enqueued trial (a baseline) goes to one of them, the
    other gets a new trial. Both popping it meant a baseline trained twice, and on an
    interrupt two failed tells and two re-queued copies of it."""
    mine, other = _two_storages(storage_url)
    try:
        mine.enqueue_trial({"x": 0.25})
        race = InTheWindow(mine, other.ask)
        trial = mine.ask()
        theirs = race.result()
        assert isinstance(theirs, optuna.Trial), theirs
        assert sorted([trial.number, theirs.number]) == [0, 1]
        ts = mine.get_trials()
        assert [t.state for t in ts] == [TrialState.RUNNING] * 2
        assert [t.system_attrs.get("fixed_params") for t in ts] == [{"x": 0.25}, None]
    finally:
        _delete(storage_url, mine.study_name)


@pytest.mark.parametrize("state", [TrialState.FAIL, TrialState.COMPLETE])
def test_a_stale_check_and_the_workers_own_tell_never_both_win(storage_url, state):
    """Another worker's stale check fails a trial while its own worker tells FAIL (it was
    interrupted) or COMPLETE: exactly one of them changes the state, the other is told that
    the trial is finished. Both winning meant two re-queued copies of the trial, or a
    completed trial that was re-queued as well (a baseline seed finished twice)."""
    mine, other = _two_storages(storage_url)
    try:
        trial = mine.ask()
        race = InTheWindow(
            mine, lambda: other._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        )
        try:
            mine.tell(trial, 0.5) if state == TrialState.COMPLETE else mine.tell(trial, state=state)
            told = True
        except RuntimeError as exc:  # UpdateFinishedTrialError; a RuntimeError in Optuna 4.0
            assert is_finished_trial_error(exc), exc
            told = False
        stale = race.result()
        if told:  # the worker won: the stale check must have been refused
            assert isinstance(stale, RuntimeError) and is_finished_trial_error(stale), stale
            assert [t.state for t in mine.get_trials()] == [state]
        else:
            assert stale is True
            assert [t.state for t in mine.get_trials()] == [TrialState.FAIL]
    finally:
        _delete(storage_url, mine.study_name)


def _open_new_file_at_once(path: str, start, results) -> None:
    from hpo.storage.sqlite_file import _set_wal

    start.wait()
    try:
        _set_wal(Path(path))
        con = sqlite3.connect(path, timeout=60)
        con.execute("CREATE TABLE IF NOT EXISTS t (x)")
        con.execute("INSERT INTO t VALUES (1)")
        con.commit()
        con.close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_sqlite_file_at_once_never_see_it_locked(tmp_path):
    # Several `hpo create` / workers starting on a brand-new file: SQLite refuses the switch
    # to WAL at once ("database is locked", no busy wait) while another process is in the
    # middle of it. Without the retry, about one round in five failed here.
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for round_ in range(12):
        start, results = ctx.Event(), ctx.Queue()
        path = str(tmp_path / f"new{round_}.db")
        procs = [ctx.Process(target=_open_new_file_at_once, args=(path, start, results))
                 for _ in range(6)]
        for p in procs:
            p.start()
        start.set()
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join()
        assert outcomes == ["ok"] * 6, (round_, outcomes)
