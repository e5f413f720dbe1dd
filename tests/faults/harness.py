"""What the fault and load scenarios share: studies, worker processes, a TCP proxy, pollers,
the consistency check, and the load scenarios themselves (``bench/fault_load_report.py``
runs those too, at a larger size).
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.config.study import load_study_config
from hpo.storage.rdb import make_storage
from hpo.study.budget import BUDGET_ATTR, DUPLICATE_RETRY, FAIL_REASON_ATTR
from hpo.study.create import create_study
from hpo.study.requeue import STALE_REASON
from hpo.study.twins import TWIN_OF_ATTR, lineage_root

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_worker.py")
PG_URL = os.environ.get("HPO_TEST_POSTGRES_URL")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

STUDY = """\
name: {name}
n_trials: {n_trials}
sampler: {{name: random, seed: 0}}
pruner: {{name: none}}
heartbeat: {{interval: {interval}, grace: {grace}, max_retry: {max_retry}}}
train: {{model: fc, depth: 1, width: 16, epochs: {epochs}, train_subset: 500, val_size: 500}}
search_space:
  relu_prime_zero: {{type: float, low: 0.0, high: 1.0}}
{baseline}"""


def env() -> dict[str, str]:
    """The environment of a worker process: this checkout first, no storage override."""
    out = {k: v for k, v in os.environ.items() if k != "HPO_STORAGE"}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), out.get("PYTHONPATH")) if p)
    out["OMP_NUM_THREADS"] = "1"
    return out


def new_study(
    url: str,
    workdir: Path,
    *,
    n_trials: int,
    seeds: int = 0,
    paired: bool = False,
    interval: int = 1,
    grace: int = 3,
    max_retry: int = 3,
    epochs: int = 2,
    prefix: str = "fault",
) -> tuple[str, int, Path]:
    """Create a study (unique name: a PostgreSQL database is shared); (name, budget, yaml)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    baseline = ("baseline: {mode: paired}\n" if paired
                else f"baseline: {{seeds: {seeds}}}\n" if seeds else "")
    path = workdir / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, n_trials=n_trials, interval=interval, grace=grace,
                                 max_retry=max_retry, epochs=epochs, baseline=baseline))
    cfg = load_study_config(path)
    storage = make_storage(url)
    create_study(cfg, storage)
    storage.engine.dispose()
    return name, cfg.total_budget, path


def delete_study(url: str, name: str) -> None:
    """Remove a study from a shared database (best effort: it may not exist)."""
    storage = make_storage(url)
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass
    finally:
        storage.engine.dispose()


def set_budget(url: str, name: str, budget: int) -> None:
    """Change a study's budget, as ``hpo create --n-trials`` does for a study that exists."""
    storage = make_storage(url)
    try:
        optuna.load_study(study_name=name, storage=storage).set_user_attr(BUDGET_ATTR, budget)
    finally:
        storage.engine.dispose()


def trials(url: str, name: str) -> list[FrozenTrial]:
    storage = make_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def start_worker(
    url: str,
    name: str,
    log: Path,
    *,
    trial_s: float = 0.5,
    mode: str = "ok",
    index: int | None = None,
    extra: tuple[str, ...] = (),
    max_pages: int | None = None,
    marker_dir: Path | None = None,
    gate: Path | None = None,
    gate_after: int = 0,
) -> subprocess.Popen[bytes]:
    """A worker process (``hpo worker`` with the fake training), its output in ``log``;
    with ``gate``, its runs past the first ``gate_after`` wait at their end until the file
    ``gate`` exists (:class:`tests.faults._fake.FakeTrain`)."""
    cmd = [sys.executable, str(WORKER), "--trial-seconds", str(trial_s), "--mode", mode]
    if max_pages:
        cmd += ["--max-pages", str(max_pages)]
    if marker_dir is not None:
        cmd += ["--marker-dir", str(marker_dir)]
    if gate is not None:
        cmd += ["--gate", str(gate), "--gate-after", str(gate_after)]
    cmd += ["--", "--study", name, "--storage", url, *extra]
    if index is not None:
        cmd += ["--worker-index", str(index)]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=log.parent)


def wait_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [proc.returncode for proc in procs]


# ----------------------------------------------------------------------------------
@dataclass
class Check:
    """What :func:`check_study` found (figures for the report)."""

    finished: int
    lost: int  # failed by the heartbeat check (worker killed)
    interrupted: int
    errored: int
    discarded: int
    reasons: Counter = field(default_factory=Counter)


def describe_trials(ts: list[FrozenTrial]) -> str:
    """One line per trial: number, state, params, user attrs and the retry bookkeeping of
    the system attrs (the enqueue/retry markers), for an assertion message."""
    keep = ("failed_trial", "retry_history", "fixed_params")
    lines = []
    for t in ts:
        system = {k: t.system_attrs[k] for k in keep if k in t.system_attrs}
        start = t.datetime_start.strftime("%H:%M:%S.%f") if t.datetime_start else "-"
        end = t.datetime_complete.strftime("%H:%M:%S.%f") if t.datetime_complete else "-"
        lines.append(f"  #{t.number} id={t._trial_id} {t.state.name} value={t.value} "
                     f"start={start} end={end} params={t.params} "
                     f"user={dict(sorted(t.user_attrs.items()))} system={system}")
    return "\n".join(["trials:", *lines])


def check_study(ts: list[FrozenTrial], budget: int, *, seeds: int = 0, max_retry: int = 3
                ) -> Check:
    """Assert the invariants every scenario must keep, and count what happened.

    * exactly ``budget`` non-twin trials finished; nothing RUNNING or WAITING;
    * each baseline seed finished exactly once; at most one finished twin per tuned lineage;
    * every failed trial (other than a discarded ask) with retries left has exactly one
      re-queued copy that is not a discarded duplicate, with the same parameters, seed and
      baseline tag.

    A failed assertion lists every trial (:func:`describe_trials`), so that a rare failure
    can be understood from its message alone.
    """
    try:
        return _check_study(ts, budget, seeds=seeds, max_retry=max_retry)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe_trials(ts)}") from None


def _check_study(ts: list[FrozenTrial], budget: int, *, seeds: int, max_retry: int
                 ) -> Check:
    by_number = {t.number: t for t in ts}
    states = Counter(t.state.name for t in ts)
    assert states["RUNNING"] == 0 and states["WAITING"] == 0, states
    finished = [t for t in ts if t.state in FINISHED]
    plain = [t for t in finished if t.user_attrs.get(TWIN_OF_ATTR) is None]
    assert len(plain) == budget, (len(plain), budget, states)
    baseline_seeds = sorted(t.user_attrs["hpo_seed"] for t in plain
                            if t.user_attrs.get("hpo_baseline"))
    assert baseline_seeds == list(range(seeds)), baseline_seeds
    lineages = Counter(
        lineage_root(int(t.user_attrs[TWIN_OF_ATTR]),
                     by_number.get(int(t.user_attrs[TWIN_OF_ATTR]), t).system_attrs)
        for t in finished if t.user_attrs.get(TWIN_OF_ATTR) is not None
    )
    assert all(n == 1 for n in lineages.values()), lineages
    copies: dict[int, list[FrozenTrial]] = {}
    for t in ts:
        history = t.system_attrs.get("retry_history") or []
        if history:
            copies.setdefault(history[-1], []).append(t)
    reasons: Counter = Counter()
    for t in ts:
        if t.state != TrialState.FAIL:
            continue
        reason = t.user_attrs.get(FAIL_REASON_ATTR) or "worker lost"
        reasons[reason.split(" (")[0].split(":")[0]] += 1
        if reason.startswith("discarded:"):  # over budget, a duplicate twin or retry
            continue
        retried = len(t.system_attrs.get("retry_history") or [])
        # A duplicate copy (two processes re-queued it at once) is discarded when popped.
        mine = [c for c in copies.get(t.number, [])
                if c.user_attrs.get(FAIL_REASON_ATTR) != DUPLICATE_RETRY]
        if retried >= max_retry:
            assert not mine, (t.number, "retried too often")
            continue
        assert len(mine) == 1, (t.number, reason, [c.number for c in mine])
        copy = mine[0]
        assert copy.params == t.params or not t.params, (t.number, copy.params, t.params)
        for key in ("hpo_seed", "hpo_baseline", TWIN_OF_ATTR):
            if key in t.user_attrs:
                assert copy.user_attrs.get(key) == t.user_attrs[key], (t.number, key)
    return Check(
        finished=len(finished),
        lost=reasons["worker lost"],
        interrupted=reasons["interrupted"],
        errored=reasons["error"],
        discarded=reasons["discarded"],
        reasons=reasons,
    )


def log_lines(paths: list[Path], needle: str) -> list[str]:
    out = []
    for path in paths:
        out += [line for line in path.read_text(errors="replace").splitlines() if needle in line]
    return out


# ----------------------------------------------------------------------------------
class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target``; :meth:`cut` drops every connection and
    refuses new ones (as a restarting server or a dead network does) until :meth:`restore`.

    Only the processes that connect through the proxy see the outage; the real server and
    every other client stay up.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._closed = False
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self.connections = 0
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self.connections += 1
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        a, b = pair
        try:
            while pair in self._pairs:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if sock is a else a).sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for sock in pair:
                _shut(sock)
                sock.close()

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            for sock in pair:
                _shut(sock)

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def via_proxy(url: str, port: int) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


class Poller(threading.Thread):
    """Call ``probe()`` every ``interval`` seconds until stopped; keep its results."""

    def __init__(self, probe: Any, interval: float) -> None:
        super().__init__(daemon=True)
        self.probe = probe
        self.interval = interval
        self.results: list[Any] = []
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.results.append(self.probe())
            except Exception as exc:  # noqa: BLE001 - recorded, asserted by the caller
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------------
def sqlite_load(workdir: Path, *, workers: int = 8, n_trials: int = 48, trial_s: float = 0.2
                ) -> dict[str, Any]:
    """``workers`` worker processes and ``hpo dashboard`` (polled over HTTP) on one SQLite
    file. Returns the figures; the caller asserts."""
    url = f"sqlite:///{workdir / 'load.db'}"
    name, budget, _ = new_study(url, workdir, n_trials=n_trials, interval=2, grace=20,
                                epochs=1, prefix="load")
    port = free_port()
    dash = subprocess.Popen([sys.executable, "-m", "hpo", "dashboard", "--storage", url,
                             "--port", str(port)], env=env(), cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/api/studies", 60)
        with urllib.request.urlopen(base + "/api/studies", timeout=10) as response:
            study_id = json.load(response)["study_summaries"][0]["study_id"]

        def poll() -> int:
            with urllib.request.urlopen(f"{base}/api/studies/{study_id}?after=0",
                                        timeout=30) as response:
                return len(json.load(response)["trials"])

        poller = Poller(poll, 0.2)
        poller.start()
        logs = [workdir / f"load-worker-{i}.log" for i in range(workers)]
        started = time.monotonic()
        procs = [start_worker(url, name, logs[i], trial_s=trial_s, index=i)
                 for i in range(workers)]
        codes = wait_all(procs, 300)
        elapsed = time.monotonic() - started
        poller.stop()
    finally:
        dash.terminate()
        dash.wait(timeout=30)
    ts = trials(url, name)
    check = check_study(ts, budget)
    return {
        "workers": workers, "budget": budget, "finished": check.finished,
        "discarded": check.discarded, "exit_codes": codes, "elapsed_s": elapsed,
        "trials_per_s": budget / elapsed,
        "locked": len(log_lines(logs, "database is locked")),
        "tracebacks": len(log_lines(logs, "Traceback")),
        "dashboard_polls": len(poller.results), "dashboard_errors": poller.errors,
        "dashboard_last_seen": poller.results[-1] if poller.results else None,
    }


def postgres_load(url: str, workdir: Path, *, workers: int = 16, n_trials: int = 64,
                  trial_s: float = 0.05) -> dict[str, Any]:
    """``workers`` worker processes on PostgreSQL; the server connections they hold are
    counted (``pg_stat_activity``, by an application_name of their own) every 0.1 s."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    app = f"hpo-load-{uuid.uuid4().hex[:8]}"
    worker_url = make_url(url).update_query_dict({"application_name": app})
    worker_url = worker_url.render_as_string(hide_password=False)
    name, budget, _ = new_study(url, workdir, n_trials=n_trials, interval=2, grace=20,
                                epochs=1, prefix="load")
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    query = sqlalchemy.text("select count(*) from pg_stat_activity where datname = "
                            "current_database() and application_name = :app")
    try:
        # Autocommit: PostgreSQL freezes pg_stat_activity for the length of a transaction.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as con:
            poller = Poller(lambda: con.execute(query, {"app": app}).scalar_one(), 0.1)
            poller.start()
            logs = [workdir / f"pg-worker-{i}.log" for i in range(workers)]
            started = time.monotonic()
            procs = [start_worker(worker_url, name, logs[i], trial_s=trial_s, index=i)
                     for i in range(workers)]
            codes = wait_all(procs, 300)
            elapsed = time.monotonic() - started
            poller.stop()
        ts = trials(url, name)
        check = check_study(ts, budget)
    finally:
        engine.dispose()
        delete_study(url, name)
    per_worker = _pool_limit(url)
    return {
        "workers": workers, "budget": budget, "finished": check.finished,
        "discarded": check.discarded, "exit_codes": codes, "elapsed_s": elapsed,
        "trials_per_s": budget / elapsed, "peak_connections": max(poller.results, default=0),
        "connection_bound": workers * per_worker, "pool_limit": per_worker,
        "poll_errors": poller.errors, "errors": len(log_lines(logs, " ERROR ")),
        "tracebacks": len(log_lines(logs, "Traceback")),
    }


def _pool_limit(url: str) -> int:
    """Connections one worker's engine may open: pool_size + max_overflow of make_storage."""
    storage = make_storage(url)
    pool = storage.engine.pool
    try:
        return pool.size() + pool._max_overflow
    finally:
        storage.engine.dispose()


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# ----------------------------------------------------------------------------------
def kill_scenario(
    url: str,
    workdir: Path,
    *,
    workers: int = 3,
    kills: int = 3,
    seed: int = 0,
    trial_s: float = 1.0,
    n_trials: int = 8,
    seeds: int = 2,
    paired: bool = False,
) -> dict[str, Any]:
    """Run a study with ``workers`` worker processes and SIGKILL one that is in the middle
    of a run ``kills`` times, at moments drawn from a seeded RNG, starting a replacement
    each time (as a supervisor would). Until the last kill a closed gate holds every run at
    its end, so each kill lands in a run and the study cannot end first, however slow the
    machine. Checks the study (:func:`check_study`) and returns the figures, including, per
    kill, when the lost trial was failed and re-run."""
    import random
    import signal
    from datetime import datetime

    name, budget, _ = new_study(url, workdir, n_trials=n_trials, seeds=seeds, paired=paired,
                                interval=1, grace=3, epochs=2, prefix="kill")
    markers = workdir / f"markers-{name}"
    markers.mkdir()
    gate = workdir / f"gate-{name}"  # created after the last kill: the held runs end
    rng = random.Random(seed)
    procs: dict[int, subprocess.Popen[bytes]] = {}
    logs: list[Path] = []

    def spawn() -> None:
        index = len(logs)  # a fresh sampler seed offset: a replacement draws new points
        logs.append(workdir / f"{name}-worker-{index}.log")
        procs[index] = start_worker(url, name, logs[-1], trial_s=trial_s, index=index,
                                    marker_dir=markers, gate=gate)

    def running(proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
        text = (markers / str(proc.pid)).read_text() if (markers / str(proc.pid)).exists() else ""
        return json.loads(text) if text else None

    for _ in range(workers):
        spawn()
    started = time.monotonic()
    done: list[dict[str, Any]] = []
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 1.5))
            victim = None
            deadline = time.monotonic() + 120  # a hang guard: a worker in a run stays there
            while victim is None:
                busy = sorted(i for i, p in procs.items() if p.poll() is None and running(p))
                if busy:
                    victim = rng.choice(busy)
                else:
                    assert time.monotonic() < deadline, "no worker in a run for 120 s:\n" + (
                        "\n".join(p.read_text() for p in logs))
                    time.sleep(0.05)
            proc = procs.pop(victim)
            time.sleep(rng.uniform(0.0, 0.3 * trial_s))  # somewhere inside the run
            run = running(proc)  # the gate is closed: the run has not ended
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            done.append({"at": datetime.now(), "t": time.monotonic() - started,
                         "pid": proc.pid, "run": run})
            spawn()
        gate.touch()
        codes = wait_all(list(procs.values()), 180)
        elapsed = time.monotonic() - started
        ts = trials(url, name)
        check = check_study(ts, budget, seeds=seeds)
    finally:
        if url.startswith("postgresql"):
            delete_study(url, name)
    copies = {(t.system_attrs.get("retry_history") or [None])[-1]: t for t in ts}
    for kill in done:
        run = kill["run"]
        kill["lost_trial"] = None
        if run is None:
            continue
        lost = [t for t in ts if t.state == TrialState.FAIL
                and str(t.user_attrs.get(FAIL_REASON_ATTR, STALE_REASON)) == STALE_REASON
                and t.params.get("relu_prime_zero", 0.0) == (run["relu_prime_zero"] or 0.0)
                and t.user_attrs.get("hpo_seed", run["seed"]) == run["seed"]
                and t.datetime_start <= kill["at"]]
        kill["lost_trial"] = lost[-1].number if lost else None
        if lost:
            kill["failed_after_s"] = (lost[-1].datetime_complete - kill["at"]).total_seconds()
            copy = copies.get(lost[-1].number)
            while copy is not None and copy.state == TrialState.FAIL:
                copy = copies.get(copy.number)  # the copy was lost too: follow the chain
            kill["rerun"] = None if copy is None else copy.number
            kill["rerun_state"] = None if copy is None else copy.state.name
            if copy is not None and copy.datetime_start is not None:
                kill["rerun_started_after_s"] = (
                    copy.datetime_start - kill["at"]).total_seconds()
    return {
        "name": name, "budget": budget, "finished": check.finished, "lost": check.lost,
        "discarded": check.discarded, "kills": done, "exit_codes": codes,
        "elapsed_s": elapsed, "trials": len(ts), "trials_per_s": check.finished / elapsed,
        "tracebacks": len(log_lines(logs, "Traceback")),
    }
