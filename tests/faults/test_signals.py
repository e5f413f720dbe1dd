"""Ctrl-C (SIGINT) and SIGTERM on a worker and on ``hpo run``: the running trial is failed
cleanly and re-queued with its parameters, nothing stays RUNNING, and the next run resumes
to exactly the budget. (tests/cli/test_study_cmds.py covers SIGINT on ``hpo run``.)

Each signal lands in a state the test waits for, never after a guessed time: a run held by
the fake training's gate, or a trial held by the objective's HOLD_ENV hook.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hpo.objective.train import HOLD_ENV
from tests.faults.harness import (
    PG_URL,
    check_study,
    delete_study,
    env,
    new_study,
    start_worker,
    trials,
)

DATA = os.environ.get("HPO_DATA_DIR")


def _wait_for_run(marker_dir: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> dict:
    """Block until the worker process is inside a training run; what it runs."""
    marker = marker_dir / str(proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = marker.read_text() if marker.exists() else ""
        if text:
            return json.loads(text)
        assert proc.poll() is None, "the worker exited before its first trial"
        time.sleep(0.05)
    raise AssertionError("the worker never started a trial")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_on_a_worker_fails_and_requeues_its_trial(storage_url, signum, tmp_path) -> None:
    name, budget, _ = new_study(storage_url, tmp_path, n_trials=2, seeds=1)
    try:
        # The gate never opens: the run cannot end before the signal lands.
        proc = start_worker(storage_url, name, tmp_path / "first.log", trial_s=0.2,
                            marker_dir=tmp_path, gate=tmp_path / "never")
        run = _wait_for_run(tmp_path, proc)
        started = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(timeout=60)
        stop_s = time.monotonic() - started
        out = (tmp_path / "first.log").read_text()
        sig = signal.Signals(signum).name
        assert code == 128 + signum, out
        assert f"worker done (signal {sig}): 0 complete" in out and "Traceback" not in out
        ts = trials(storage_url, name)
        assert [t.state for t in ts] == [TrialState.FAIL, TrialState.WAITING]
        failed, copy = ts
        assert failed.user_attrs["hpo_fail_reason"] == f"interrupted ({sig})"
        assert failed.user_attrs["hpo_seed"] == run["seed"] == 0  # the baseline ran first
        assert copy.system_attrs["failed_trial"] == failed.number
        assert copy.user_attrs == {"hpo_baseline": True, "hpo_seed": 0,
                                   "hpo_retry_reason": f"interrupted ({sig})"}
        # The next worker resumes: the copy runs, the budget is met exactly.
        again = start_worker(storage_url, name, tmp_path / "again.log", trial_s=0.05)
        assert again.wait(timeout=60) == 0, (tmp_path / "again.log").read_text()
        check = check_study(trials(storage_url, name), budget, seeds=1)
        print(f"\n{sig} on a worker: stopped {stop_s:.2f} s after the signal; resumed to "
              f"{check.finished}/{budget} finished ({dict(check.reasons)})")
    finally:
        if storage_url.startswith("postgresql"):
            delete_study(storage_url, name)


def test_signal_while_waiting_for_the_storage_stops_the_worker(tmp_path) -> None:
    """A stop signal during the back-off of an unreachable storage ends the worker at once
    (it does not wait out --storage-retry), with the signal's exit code."""
    from tests.faults.harness import TcpProxy, via_proxy

    if not PG_URL:
        pytest.skip("HPO_TEST_POSTGRES_URL is not set")
    from sqlalchemy.engine import make_url

    target = make_url(PG_URL)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    url = via_proxy(PG_URL, proxy.port)
    name, budget, _ = new_study(PG_URL, tmp_path, n_trials=3)
    try:
        gate = tmp_path / "gate"
        proc = start_worker(url, name, tmp_path / "w.log", trial_s=0.2, marker_dir=tmp_path,
                            gate=gate)
        _wait_for_run(tmp_path, proc)  # held at its end: the study cannot finish first
        proxy.cut()
        gate.touch()  # the run ends; storing its result meets the outage
        log = tmp_path / "w.log"
        deadline = time.monotonic() + 60  # a hang guard
        while "retrying in" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        stop_s = time.monotonic() - started
        out = log.read_text()
        assert code == 128 + signal.SIGTERM, out
        assert "stopped while waiting for the storage" in out and "Traceback" not in out
        print(f"\nSIGTERM while the storage was unreachable: stopped after {stop_s:.2f} s")
    finally:
        proxy.close()
        delete_study(PG_URL, name)


@pytest.mark.skipif(not DATA, reason="HPO_DATA_DIR is not set")
def test_sigterm_on_hpo_run_stops_cleanly_and_the_next_run_resumes(tmp_path) -> None:
    name = f"run-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "study.yaml"
    config.write_text(f"""\
name: {name}
n_trials: 3
sampler: {{name: random, seed: 0}}
pruner: {{name: none}}
heartbeat: {{interval: 1, grace: 5}}
train: {{model: fc, depth: 1, width: 16, train_subset: 5000, val_size: 500, epochs: 3}}
search_space:
  relu_prime_zero: {{type: float, low: 0.0, high: 1.0}}
baseline: {{seeds: 2}}
""")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    cmd = [sys.executable, "-m", "hpo", "run", str(config), "--workers", "2", "--storage", url,
           "--poll-interval", "0.5"]
    hold = tmp_path / "hold"  # every trial waits there before training (HOLD_ENV)
    hold.mkdir()
    err_path = tmp_path / "run.err"
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env={**env(), HOLD_ENV: str(hold)},
                                stdout=subprocess.DEVNULL, stderr=err_file)
    try:
        deadline = time.monotonic() + 300  # a hang guard
        while not list(hold.glob("*.held")):
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.1)
        held = int(next(hold.glob("*.held")).stem)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        stop_s = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    err = err_path.read_text()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM; running trials were re-queued" in err
    ts = trials(url, name)
    assert not [t for t in ts if t.state == TrialState.RUNNING]
    interrupted = [t for t in ts if t.state == TrialState.FAIL]
    assert held in [t.number for t in interrupted], err
    assert {t.user_attrs["hpo_fail_reason"] for t in interrupted} == {"interrupted (SIGTERM)"}
    for log in (tmp_path / "logs" / name).glob("worker-*.log"):
        assert "Traceback" not in log.read_text()
    resumed = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    try:
        check = check_study(trials(url, name), 5, seeds=2)
    except AssertionError as exc:  # the trials are listed; the workers' logs say who did what
        logs = sorted((tmp_path / "logs" / name).glob("worker-*.log"))
        raise AssertionError("\n".join([str(exc), *(f"== {p.name}:\n{p.read_text()}"
                                                     for p in logs)])) from None
    print(f"\nSIGTERM on hpo run: stopped {stop_s:.1f} s after the signal with "
          f"{len(interrupted)} trial(s) interrupted; the next run resumed to "
          f"{check.finished}/5")
