"""The study service end to end: ``python -m hpo ...`` as subprocesses on temporary storages.

Real-training tests need the datasets (HPO_DATA_DIR; skipped only when it is unset). The
worker tests also run against PostgreSQL when HPO_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from hpo.objective.train import HOLD_ENV

ROOT = Path(__file__).resolve().parents[2]
DATA = os.environ.get("HPO_DATA_DIR")
PG = os.environ.get("HPO_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG else [])
needs_data = pytest.mark.skipif(not DATA, reason="HPO_DATA_DIR is not set")

STUDY = """\
name: {name}
n_trials: 3
sampler: {{name: random, seed: 0}}
pruner: {{name: none}}
heartbeat: {{interval: 1, grace: 5}}
train:
  model: fc
  depth: 1
  width: 16
  train_subset: {subset}
  val_size: 500
  epochs: {epochs}
search_space:
  relu_prime_zero: {{type: float, low: 0.0, high: 1.0}}
baseline:
  seeds: 2
"""
BUDGET = 5  # 3 search + 2 baseline seeds


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HPO_STORAGE"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def hpo(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(params=BACKENDS)
def study_setup(request: pytest.FixtureRequest, tmp_path: Path):
    """(config path, storage URL, study name) with a unique name per test."""
    name = f"cli-{uuid.uuid4().hex[:8]}"
    url = PG if request.param == "postgresql" else f"sqlite:///{tmp_path / 'studies.db'}"
    config = tmp_path / "study.yaml"
    config.write_text(STUDY.format(name=name, subset=500, epochs=1))
    yield config, url, name
    if request.param == "postgresql":  # the database outlives the test
        try:
            optuna.delete_study(study_name=name, storage=url)
        except KeyError:
            pass  # the test failed before creating it


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def _finished(trials) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


@needs_data
def test_run_two_workers_spends_exactly_the_budget_and_resumes(study_setup, tmp_path) -> None:
    config, url, name = study_setup
    first = hpo("run", str(config), "--workers", "2", "--storage", url,
                "--poll-interval", "0.5", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    trials = _trials(url, name)
    assert len(_finished(trials)) == BUDGET
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # The only failures allowed: a worker's ask that lost the race for the last slot.
    assert {t.user_attrs.get("hpo_fail_reason") for t in trials
            if t.state == TrialState.FAIL} <= {"discarded: over budget"}
    baselines = [t for t in _finished(trials) if t.user_attrs.get("hpo_baseline")]
    assert sorted(t.user_attrs["hpo_seed"] for t in baselines) == [0, 1]
    assert f"{BUDGET}/{BUDGET} trials" in first.stderr  # the progress line
    assert "| best val_accuracy " in first.stderr and " % (#" in first.stderr
    logs = sorted((tmp_path / "logs" / name).glob("worker-*.log"))
    assert len(logs) == 2

    # A second run on a spent study adds nothing; with more trials it resumes.
    again = hpo("run", str(config), "--workers", "2", "--storage", url, "--n-trials", "4",
                cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trials = _trials(url, name)
    assert len(_finished(trials)) == BUDGET + 1
    assert len([t for t in trials if t.user_attrs.get("hpo_baseline")]) == 2
    assert "password" not in again.stdout + again.stderr


@needs_data
def test_worker_command_and_status(study_setup, tmp_path) -> None:
    config, url, name = study_setup
    created = hpo("create", str(config), "--storage", url, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert f"budget {BUDGET} trials (3 search + 2 baseline)" in created.stdout
    worker = hpo("worker", "--study", name, "--storage", url, "--threads", "1", cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr
    assert "worker done (budget): 5 complete" in worker.stdout
    status = hpo("status", name, "--storage", url, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"{BUDGET}/{BUDGET} trials finished" in status.stdout
    assert "baseline (PyTorch derivatives): mean" in status.stdout
    assert "over 2 runs" in status.stdout
    assert "best: trial" in status.stdout
    # Accuracy in percent and its spread in pp, as hpo compare shows them.
    assert "pp over 2 runs" in status.stdout and "val_accuracy" in status.stdout
    assert " %" in status.stdout.split("best: trial")[1].splitlines()[0]


@needs_data
def test_interrupted_run_leaves_nothing_running_and_resumes(tmp_path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "held.yaml"
    config.write_text(STUDY.format(name=name, subset=500, epochs=1))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    # Every trial holds before training until the test lets it go (the HOLD_ENV hook): one
    # is let go and finishes, and the SIGINT lands while another is provably running.
    hold = tmp_path / "hold"
    hold.mkdir()
    env = {**_env(), HOLD_ENV: str(hold)}
    err_path = tmp_path / "run.err"
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(config), "--workers",
                                 "2", "--storage", url, "--poll-interval", "0.5"],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=err_file, text=True)
    try:
        first = _wait_held(hold, proc, err_path, skip=set())
        (hold / f"{first}.go").touch()
        _wait_until(lambda: any(t.number == first and t.state == TrialState.COMPLETE
                                for t in _trials(url, name)), proc, err_path)
        held = _wait_held(hold, proc, err_path, skip={first})
        assert [t.state for t in _trials(url, name) if t.number == held] == [TrialState.RUNNING]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    err = err_path.read_text()
    assert proc.returncode == 130, err  # interrupted, not finished
    trials = _trials(url, name)
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == []
    assert [t.number for t in _finished(trials)] == [first]  # the one let go, no other
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert held in [t.number for t in failed], "SIGINT did not interrupt the held trial"
    assert {t.user_attrs["hpo_fail_reason"] for t in failed} == {"interrupted (SIGINT)"}
    copies = {f.number: _copies_of(f, trials) for f in failed}
    assert {n: [c.state for c in cs] for n, cs in copies.items()} == {
        n: [TrialState.WAITING] for n in copies
    }  # each interrupted trial has one copy queued, not yet run

    resumed = hpo("run", str(config), "--workers", "2", "--storage", url, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    trials = _trials(url, name)
    assert len(_finished(trials)) == BUDGET
    assert len(trials) == BUDGET + len(failed)  # the copies ran; no trial beyond the budget
    for f in failed:
        (copy,) = _copies_of(f, trials)
        assert copy.state == TrialState.COMPLETE
        # the same run again (a trial interrupted before its objective asked for its
        # parameters has none yet: its copy gets the enqueued ones; a search trial records
        # its seed with its results, a baseline carries it from the start)
        assert f.params.items() <= copy.params.items()
        for attr in ("hpo_seed", "hpo_baseline"):
            if attr in f.user_attrs:
                assert copy.user_attrs[attr] == f.user_attrs[attr], attr
    baselines = [t for t in _finished(trials) if t.user_attrs.get("hpo_baseline")]
    assert sorted(t.user_attrs["hpo_seed"] for t in baselines) == [0, 1]


def _copies_of(failed: optuna.trial.FrozenTrial, trials) -> list[optuna.trial.FrozenTrial]:
    """The trials re-queued to re-run ``failed``: their retry history (the system attr that
    Optuna's retry callback and our re-queue write) ends with it."""
    return [t for t in trials if t.system_attrs.get("retry_history", [])[-1:] == [failed.number]]


def _wait_until(ready, proc: subprocess.Popen, err: Path, timeout: float = 300) -> None:
    """Block until ``ready()``; fail at once if ``proc`` exits first (``timeout`` only guards
    against a hang: the test waits for states, never for a time)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"hpo run exited ({proc.returncode}): {err.read_text()}"
        assert time.monotonic() < deadline, f"still waiting after {timeout} s: {err.read_text()}"
        time.sleep(0.1)


def _wait_held(hold: Path, proc: subprocess.Popen, err: Path, skip: set[int]) -> int:
    """The number of a trial held by the HOLD_ENV hook (not one of ``skip``), once one is."""
    def held() -> list[int]:
        return sorted(n for n in (int(p.stem) for p in hold.glob("*.held")) if n not in skip)

    _wait_until(lambda: bool(held()), proc, err)
    return held()[0]


@needs_data
def test_export_writes_a_csv_pandas_reads(tmp_path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "study.yaml"
    config.write_text(STUDY.format(name=name, subset=500, epochs=2))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert hpo("run", str(config), "--storage", url, cwd=tmp_path).returncode == 0
    out = tmp_path / "trials.csv"
    exported = hpo("export", name, "--storage", url, "--output", str(out), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    df = pd.read_csv(out)
    assert len(df) == BUDGET
    expected = [
        "study", "model", "dataset", "epochs", "train_subset", "batch_size", "lr",
        "number", "state", "value", "params_relu_prime_zero", "user_attrs_hpo_baseline",
        "user_attrs_hpo_seed", "user_attrs_test_accuracy_pct",
        "user_attrs_val_accuracy_pct_per_epoch_1", "user_attrs_val_accuracy_pct_per_epoch_2",
        "user_attrs_train_loss_per_epoch_2", "user_attrs_kink_hits",
        "user_attrs_kink_hits_per_epoch_1", "user_attrs_kink_hits_layer_2",
        "user_attrs_precision", "user_attrs_device",
        "duration_s", "user_attrs_samples_per_second", "user_attrs_wall_time_s",
        "user_attrs_params_sha256", "user_attrs_diverged",
    ]
    assert [c for c in expected if c not in df.columns] == []
    assert set(df["study"]) == {name} and set(df["model"]) == {"fc"}
    assert set(df["train_subset"]) == {500} and set(df["epochs"]) == {2}
    # value: the objective as Optuna stores it (a fraction); accuracy columns in percent.
    assert (100 * df["value"] - df["user_attrs_val_accuracy_pct_per_epoch_2"]).abs().max() < 1e-9
    assert df["user_attrs_hpo_baseline"].sum() == 2
    assert df["user_attrs_hpo_seed"].dtype.kind == "i"  # integers, not 0.0
    # Constant platform columns: in the side file, not in the table.
    assert "platform.json" in exported.stdout
    side = json.loads((tmp_path / "trials.platform.json").read_text())
    assert side["columns"]["platform_device"] == "cpu"
    assert "platform_device" not in df.columns

    every = hpo("export", "--all", "--storage", url, "--output", str(tmp_path / "all"),
                cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    assert (tmp_path / "all" / f"{name}.csv").exists()


def test_status_of_a_created_study_without_trials(tmp_path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(STUDY.format(name="fresh", subset=500, epochs=1))
    url = "postgresql://someone:s3cret@127.0.0.1:1/none"
    assert hpo("create", str(config), cwd=tmp_path).returncode == 0  # default storage
    assert sorted(p.name for p in (tmp_path / "storage").iterdir()) == ["hpo.db"]
    status = hpo("status", "fresh", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"storage sqlite:///{tmp_path}/storage/hpo.db\n")
    assert "0/5 trials finished; waiting 2" in status.stdout
    by_file = hpo("status", str(config), cwd=tmp_path)
    assert by_file.stdout == status.stdout
    # An unreachable server: one line, exit 1, and the password is not shown.
    down = hpo("status", "fresh", "--storage", url, cwd=tmp_path, timeout=60)
    assert down.returncode == 1
    assert "s3cret" not in down.stderr and "postgresql://someone:***@" in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1


def test_one_project_database_holds_every_study(tmp_path) -> None:
    """Studies created from anywhere in the project share storage/hpo.db; status, export
    --all and the dashboard see all of them without --storage."""
    configs = tmp_path / "study_configs"
    (configs / "deep").mkdir(parents=True)
    for name in ("alpha", "beta"):
        (configs / f"{name}.yaml").write_text(STUDY.format(name=name, subset=500, epochs=1))
    assert hpo("create", "study_configs/alpha.yaml", cwd=tmp_path).returncode == 0
    made = hpo("create", "../beta.yaml", cwd=configs / "deep")  # from a subfolder
    assert made.returncode == 0, made.stderr
    db = tmp_path / "storage" / "hpo.db"
    assert f"study beta in sqlite:///{db}" in made.stdout
    assert [p.name for p in tmp_path.rglob("*.db")] == ["hpo.db"]

    status = hpo("status", cwd=configs / "deep")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == f"storage sqlite:///{db}: 2 studies"
    assert [line.split(" (")[0] for line in lines if line.startswith("study ")] == [
        "study alpha", "study beta"]
    assert "other databases" not in status.stdout

    every = hpo("export", "--all", "--output", str(tmp_path / "csv"), cwd=configs)
    assert every.returncode == 0, every.stderr
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["alpha.csv", "beta.csv"]
    assert len(pd.read_csv(tmp_path / "csv" / "beta.csv")) == 2  # its two baseline trials

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hpo", "dashboard", "--port", str(port)],
                            cwd=configs, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert f"optuna-dashboard for sqlite:///{db} at" in proc.stdout.readline()
        studies = _dashboard_studies(port)
        assert sorted(s["study_name"] for s in studies) == ["alpha", "beta"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_status_names_the_older_one_file_per_study_databases(tmp_path) -> None:
    (tmp_path / "study.yaml").write_text(STUDY.format(name="old", subset=500, epochs=1))
    (tmp_path / "new.yaml").write_text(STUDY.format(name="new", subset=500, epochs=1))
    # a database as earlier versions wrote it, one file per study
    made = hpo("create", "study.yaml", "--storage", "sqlite:///storage/old.db", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    status = hpo("status", cwd=tmp_path)  # no storage/hpo.db yet: not an error
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [
        f"storage sqlite:///{tmp_path}/storage/hpo.db: no studies yet (the file does not "
        "exist; hpo create CONFIG or hpo run CONFIG writes it)",
        "other databases under storage/ (not shown above; e.g. one file per study from an "
        "earlier version), open one with --storage:",
        "  hpo status --storage sqlite:///storage/old.db",
    ]
    assert not (tmp_path / "storage" / "hpo.db").exists()  # status wrote nothing
    assert hpo("create", "new.yaml", cwd=tmp_path).returncode == 0
    lookup = hpo("status", "old", cwd=tmp_path)  # in hpo.db: not found, and where it is
    assert lookup.returncode == 1
    assert "existing studies: ['new']" in lookup.stderr
    assert lookup.stderr.strip().endswith(
        "it may be in sqlite:///storage/old.db: add --storage sqlite:///storage/old.db.")
    opened = hpo("status", "old", "--storage", "sqlite:///storage/old.db", cwd=tmp_path)
    assert opened.returncode == 0 and "study old (maximize): 0/5" in opened.stdout
    exported = hpo("export", "old", "--storage", "sqlite:///storage/old.db", "-o", "o.csv",
                   cwd=tmp_path)
    assert exported.returncode == 0 and len(pd.read_csv(tmp_path / "o.csv")) == 2


def test_a_read_only_storage_folder_is_one_line_and_writes_nothing(tmp_path) -> None:
    """A read-only storage/ (a read-only tmpfs mounted on it; root writes through chmod, so
    without the right to mount, root skips this, and others use chmod a-w)."""
    (tmp_path / "study.yaml").write_text(STUDY.format(name="ro", subset=500, epochs=1))
    store = tmp_path / "storage"
    store.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(store)],
                             capture_output=True).returncode == 0
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root without the right to mount: no way to make a folder read-only")
        store.chmod(0o555)
    try:
        for args in (("create", "study.yaml"), ("run", "study.yaml")):
            out = hpo(*args, cwd=tmp_path)
            assert out.returncode == 1, (args, out.stderr)
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and "is in a read-only folder" in lines[0], out.stderr
            assert "fix:" in lines[0]
        assert list(store.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
            "storage", "study.yaml"]  # no database, no logs
    finally:
        if mounted:
            subprocess.run(["umount", str(store)], capture_output=True)
        else:
            store.chmod(0o755)


def test_bad_input_exit_codes(tmp_path) -> None:
    missing = hpo("export", "NOSUCH", cwd=tmp_path)
    assert missing.returncode == 1
    assert len(missing.stderr.strip().splitlines()) == 1 and "no studies yet" in missing.stderr
    assert not (tmp_path / "storage").exists()  # nothing created by a lookup
    config = tmp_path / "study.yaml"
    config.write_text(STUDY.format(name="bad", subset=500, epochs=1))
    assert hpo("create", str(config), cwd=tmp_path).returncode == 0
    nosuch = hpo("export", "NOSUCH", cwd=tmp_path)
    assert nosuch.returncode == 1 and "existing studies: ['bad']" in nosuch.stderr
    for args in (["run", str(config), "--workers", "0"], ["worker", "--bogus"],
                 ["export"], ["worker"], ["dashboard", "--port", "nope"]):
        bad = hpo(*args, cwd=tmp_path)
        assert bad.returncode == 2, (args, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1, (args, bad.stderr)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_run_refuses_tf32_without_cuda_before_writing_anything(tmp_path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(STUDY.format(name="tf32", subset=500, epochs=1).replace(
        "  epochs: 1\n", "  epochs: 1\n  device: auto\n").replace(
        "search_space:\n", "search_space:\n  precision: {type: categorical, "
        "choices: [float32, tf32]}\n"))
    created = hpo("create", str(config), cwd=tmp_path)  # a study for GPU workers: fine
    assert created.returncode == 0, created.stderr
    # (hpo worker makes the same check: tests/worker/test_pool.py)
    bad = hpo("run", str(config), "--workers", "1", cwd=tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "precision 'tf32' needs a CUDA device" in bad.stderr
    trials = optuna.load_study(study_name="tf32",
                               storage=f"sqlite:///{tmp_path}/storage/hpo.db").trials
    assert trials and {t.state.name for t in trials} == {"WAITING"}  # baselines, untaken
    assert not (tmp_path / "logs").exists()  # hpo run stopped before starting a worker


def _dashboard_studies(port: int) -> list[dict]:
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/api/studies", timeout=10) as response:
                return json.load(response)["study_summaries"]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dashboard_serves_the_study(tmp_path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(STUDY.format(name="shown", subset=500, epochs=1))
    assert hpo("create", str(config), cwd=tmp_path).returncode == 0
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hpo", "dashboard", str(config),
                             "--port", str(port)], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        announced = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in announced and "bound to 127.0.0.1" in announced
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with urllib.request.urlopen(base + "/api/studies", timeout=10) as response:
            studies = json.load(response)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["shown"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


PAIRED = """\
name: {name}
n_trials: 3
sampler: {{name: random, seed: 0}}
pruner: {{name: none}}
heartbeat: {{interval: 1, grace: 5}}
train: {{model: fc, depth: 1, width: 16, train_subset: 500, val_size: 500, epochs: 1}}
search_space:
  relu_prime_zero: {{type: float, low: 0.0, high: 1.0}}
baseline: {{mode: paired}}
"""


@needs_data
def test_run_paired_study_finishes_its_budget_plus_one_twin_per_tuned_trial(tmp_path) -> None:
    from hpo.analysis.trials import pair_trials, read_trials
    from hpo.study.create import load_study

    url = f"sqlite:///{tmp_path / 'paired.db'}"
    config = tmp_path / "paired.yaml"
    config.write_text(PAIRED.format(name="paired"))
    run = hpo("run", str(config), "--workers", "2", "--storage", url, "--poll-interval", "0.5",
              cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    trials = _trials(url, "paired")
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    search = [t for t in _finished(trials) if not t.user_attrs.get("hpo_baseline")]
    twins = [t for t in _finished(trials) if t.user_attrs.get("hpo_twin_of") is not None]
    assert len(search) == 3  # a continuous ReLU'(0): every search trial is tuned
    assert len(twins) == 3 and len(_finished(trials)) == 6
    assert sorted(t.user_attrs["hpo_twin_of"] for t in twins) == sorted(t.number for t in search)
    assert "6/6 trials" in run.stdout and "twins" in run.stdout
    status = hpo("status", "paired", "--storage", url, cwd=tmp_path)
    assert status.returncode == 0 and "twins" in status.stdout, status.stderr
    study, cfg = load_study("paired", url)
    pairs = pair_trials(read_trials(study, cfg)[0])
    by_tuned = {t.user_attrs["hpo_twin_of"]: t.number for t in twins}
    assert {(p.tuned, p.default) for p in pairs} == set(by_tuned.items())
