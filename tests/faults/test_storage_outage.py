"""The database server restarting or unreachable for a while (PostgreSQL).

The workers reach the server through a TCP proxy run by the test (tests/faults/harness.py:
TcpProxy), which the test cuts and restores: only those workers see the outage, the real
server and every other client stay up. The workers log each retry with the URL masked,
wait with exponential back-off, and carry on when the server is back; past
``--storage-retry`` seconds they stop with a one-line error. A storage unreachable at start
is a one-line error and exit code 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from tests.faults.conftest import needs_postgres
from tests.faults.harness import (
    PG_URL,
    TcpProxy,
    check_study,
    delete_study,
    env,
    free_port,
    log_lines,
    new_study,
    start_worker,
    trials,
    via_proxy,
)

SECRET = "s3cret"  # the server trusts local users: any password works, and must never show


@pytest.fixture()
def proxied():
    """(proxy, URL through the proxy with a password in it)."""
    target = make_url(PG_URL)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    url = make_url(via_proxy(PG_URL, proxy.port)).set(password=SECRET)
    yield proxy, url.render_as_string(hide_password=False)
    proxy.close()


def _finished(url: str, name: str) -> int:
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials(url, name))


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@needs_postgres
def test_workers_ride_out_a_server_outage(proxied, tmp_path: Path) -> None:
    proxy, url = proxied
    name, budget, _ = new_study(PG_URL, tmp_path, n_trials=10, seeds=2, grace=30)
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    try:
        # Each worker's third run holds at its end until the gate opens: exactly 4 trials
        # finish before the outage, and the study cannot end before it.
        gate = tmp_path / "gate"
        procs = [start_worker(url, name, logs[i], trial_s=0.5, index=i, gate=gate,
                              gate_after=2) for i in range(2)]
        _wait(lambda: _finished(PG_URL, name) >= 4, 120, "4 finished trials")
        proxy.cut()
        cut_at = time.monotonic()
        gate.touch()  # both held runs end; storing their results meets the outage
        _wait(lambda: all(log_lines([log], "retrying in") for log in logs), 120,
              "both workers retrying")
        before = _finished(PG_URL, name)
        proxy.restore()
        restored_at = time.monotonic()
        _wait(lambda: _finished(PG_URL, name) > before, 60, "a trial finished after the outage")
        resumed_s = time.monotonic() - restored_at
        codes = [proc.wait(timeout=120) for proc in procs]
        text = "\n".join(log.read_text() for log in logs)
        assert codes == [0, 0], text
        check = check_study(trials(PG_URL, name), budget, seeds=2)
    finally:
        delete_study(PG_URL, name)
    retries = log_lines(logs, "retrying in")
    assert retries, text
    masked = make_url(url).render_as_string(hide_password=True)
    assert all(f"storage {masked} unreachable while" in line for line in retries), retries
    assert SECRET not in text and "Traceback" not in text
    assert re.search(r"storage \S+ reachable again after [\d.]+ s", text)
    # every trial either finished or was failed and re-run with the same parameters
    print(f"\noutage of {restored_at - cut_at:.1f} s: {len(retries)} retry lines, first trial "
          f"finished {resumed_s:.1f} s after the server came back; {check.finished}/{budget} "
          f"finished; failures {dict(check.reasons) or 'none'}")
    print("  e.g. " + retries[0].split(": ", 1)[-1])


@needs_postgres
def test_worker_gives_up_after_storage_retry_and_the_study_recovers(proxied, tmp_path) -> None:
    proxy, url = proxied
    name, budget, _ = new_study(PG_URL, tmp_path, n_trials=4, grace=2)
    log = tmp_path / "worker.log"
    try:
        gate = tmp_path / "gate"  # the run holds at its end: the study cannot finish first
        proc = start_worker(url, name, log, trial_s=0.2, extra=("--storage-retry", "3"),
                            gate=gate, marker_dir=tmp_path)
        marker = tmp_path / str(proc.pid)  # non-empty while the worker is in a run
        _wait(lambda: marker.exists() and bool(marker.read_text()), 60, "a run")
        proxy.cut()
        gate.touch()  # storing the run's result meets the outage
        started = time.monotonic()
        code = proc.wait(timeout=60)
        gave_up_s = time.monotonic() - started
        out = log.read_text()
        assert code == 1, out
        last = out.strip().splitlines()[-1]
        assert last.startswith("hpo: error: storage ") and "unreachable for" in last, last
        assert "--storage-retry" in last and SECRET not in out and "Traceback" not in out
        # Its trial is left RUNNING (the server was gone); once the server is back, the
        # next worker's heartbeat check fails and re-queues it.
        proxy.restore()
        again = start_worker(PG_URL, name, tmp_path / "again.log", trial_s=0.05)
        assert again.wait(timeout=60) == 0, (tmp_path / "again.log").read_text()
        check = check_study(trials(PG_URL, name), budget)
    finally:
        delete_study(PG_URL, name)
    print(f"\n--storage-retry 3: gave up {gave_up_s:.1f} s after the cut: {last}\n"
          f"  next worker recovered the study: {check.finished}/{budget} finished, "
          f"{check.lost} trial re-run")


@pytest.mark.parametrize("command", ["worker", "run", "status"])
def test_unreachable_storage_at_start_is_one_line_and_exit_1(command, tmp_path) -> None:
    port = free_port()  # nothing listens there: connection refused
    url = f"postgresql+psycopg2://postgres:{SECRET}@127.0.0.1:{port}/test"
    config = tmp_path / "study.yaml"
    config.write_text("name: down\nn_trials: 1\ntrain: {model: fc, epochs: 1}\n"
                      "search_space: {relu_prime_zero: {type: float, low: 0.0, high: 1.0}}\n")
    args = {"worker": ["worker", "--study", "down"], "run": ["run", str(config)],
            "status": ["status", "down"]}[command]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "hpo", *args, "--storage", url], cwd=tmp_path,
                          env=env(), capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and lines[0].startswith("hpo: error:"), done.stderr
    assert "***" in lines[0] and SECRET not in done.stderr + done.stdout
    print(f"\nhpo {command} on a dead server ({time.monotonic() - started:.1f} s): {lines[0]}")


def test_hpo_run_progress_pauses_while_the_storage_is_unreachable(caplog) -> None:
    """``hpo run`` polls the storage for its progress line; an outage must not make it stop
    (and kill) its workers, which retry on their own."""
    import sqlalchemy.exc

    from hpo.errors import StorageError
    from hpo.worker.pool import _poll

    class DownMonitor:
        def update(self):
            raise sqlalchemy.exc.OperationalError("SELECT", {}, ConnectionError(
                "server closed the connection unexpectedly"))

    url = f"postgresql+psycopg2://postgres:{SECRET}@127.0.0.1:5432/test"
    assert _poll(DownMonitor(), url) is None  # type: ignore[arg-type]
    assert "progress paused: storage postgresql+psycopg2://postgres:***@" in caplog.text
    with pytest.raises(StorageError, match="unreachable after the workers stopped"):
        _poll(DownMonitor(), url, final=True)  # type: ignore[arg-type]
    assert SECRET not in caplog.text
