"""The shipped Slurm array script (``deploy/slurm/hpo-worker.sbatch``) on a real one-node
cluster (``deploy/slurm/local-cluster.sh``, started by ``.ci/run``) against PostgreSQL: two
array tasks train a small fc net on real MNIST; one task is cancelled (``scancel``) and the
other requeued (as on preemption) while their trials are held at a known point, and the
study still ends with exactly its budget, nothing RUNNING, both trials failed as
interrupted and their re-queued copies completed.

Without a cluster the test is skipped, unless ``CI`` is set: then it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config.study import load_study_config
from hpo.objective.train import HOLD_ENV
from hpo.storage.rdb import make_storage
from hpo.study.budget import FAIL_REASON_ATTR
from hpo.study.create import create_study
from hpo.study.requeue import WORKER_ATTR
from tests.faults.harness import PG_URL, check_study, delete_study, env, trials

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "slurm" / "hpo-worker.sbatch"
DATA = os.environ.get("HPO_DATA_DIR")
N_TRIALS, SEEDS = 2, 2
BUDGET = N_TRIALS + SEEDS
STUDY = """\
name: {name}
n_trials: {n_trials}
sampler: {{name: random, seed: 0}}
pruner: {{name: none}}
heartbeat: {{interval: 1, grace: 5}}
train: {{model: fc, depth: 2, width: 64, train_subset: 2000, val_size: 1000, epochs: 1}}
search_space:
  relu_prime_zero: {{type: float, low: 0.0, high: 1.0}}
baseline: {{seeds: {seeds}}}
"""


def _cluster_problem() -> str | None:
    """Why no Slurm cluster takes jobs here (None: it does)."""
    for tool in ("sbatch", "scancel", "squeue", "scontrol", "sinfo"):
        if shutil.which(tool) is None:
            return f"{tool} not found (install Debian's slurm-wlm)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if "is UP" not in ping.stdout:
        said = (ping.stdout + ping.stderr).strip().splitlines()
        return f"slurmctld is not up ({said[0] if said else 'scontrol ping said nothing'})"
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                           timeout=30).stdout.split()
    if not set(state) & {"idle", "mixed", "allocated", "completing"}:
        return f"no Slurm node takes jobs (states: {state or 'none'})"
    return None


@pytest.fixture
def cluster() -> None:
    problem = _cluster_problem()
    if problem is None and not (PG_URL and DATA):
        problem = "HPO_TEST_POSTGRES_URL and HPO_DATA_DIR must be set"
    if problem is None:
        return
    message = f"no Slurm test cluster: {problem}; start one with deploy/slurm/local-cluster.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _array_task_of(marker: str) -> str | None:
    """The array task id of the worker process ``host:pid`` (a local cluster: /proc)."""
    pid = marker.rpartition(":")[2]
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"SLURM_ARRAY_TASK_ID="):
            return item.split(b"=", 1)[1].decode()
    return None


def _job_field(job: str, field: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True,
                         timeout=30).stdout
    for word in out.split():
        if word.startswith(f"{field}="):
            return word.split("=", 1)[1]
    return ""


def _held_trial(name: str, hold: Path, skip_task: str | None, deadline: float):
    """A RUNNING trial held at its start (:data:`hpo.objective.train.HOLD_ENV`) in a worker
    of an array task other than ``skip_task``, with that task's id: a signal sent now lands
    while it runs, whatever the machine's speed; (None, None) at the deadline."""
    storage = make_storage(PG_URL)  # one connection pool for the whole poll: fast polls
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        while time.monotonic() < deadline:
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if WORKER_ATTR in t.user_attrs and (hold / f"{t.number}.held").exists():
                    task = _array_task_of(t.user_attrs[WORKER_ATTR])
                    if task is not None and task != skip_task:
                        return t, task
            time.sleep(0.1)
    finally:
        storage.engine.dispose()
    return None, None


def _slurm(*args: str) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, (args, out.stderr)
    return out.stdout.strip()


def test_a_cancelled_and_a_requeued_task_requeue_their_trials_and_the_budget_is_met(
    cluster, tmp_path
) -> None:
    """Task X is cancelled (``scancel``) while it trains; task Y is then requeued while it
    trains (``scontrol requeue``: what Slurm does to a preempted ``--requeue`` job). Both
    trials fail as interrupted and are re-queued; Y starts again and finishes the budget."""
    name = f"slurm-{uuid.uuid4().hex[:8]}"
    config = tmp_path / f"{name}.yaml"
    config.write_text(STUDY.format(name=name, n_trials=N_TRIALS, seeds=SEEDS))
    storage = make_storage(PG_URL)
    create_study(load_study_config(config), storage)
    storage.engine.dispose()
    job = None
    try:
        hold = tmp_path / "hold"  # every trial waits at its start until hold/go exists
        hold.mkdir()
        job_env = {**env(), "HPO_STORAGE": PG_URL, HOLD_ENV: str(hold)}
        submit = subprocess.run(
            ["sbatch", "--parsable", "--array=0-1", f"--output={tmp_path}/task-%a.log",
             str(SCRIPT), name],
            cwd=tmp_path, env=job_env, capture_output=True, text=True, timeout=60)
        assert submit.returncode == 0, submit.stderr
        job = submit.stdout.strip().split(";")[0]

        cancelled, x = _held_trial(name, hold, None, time.monotonic() + 90)
        assert cancelled is not None, "no trial ever ran:\n" + _logs(tmp_path)
        _slurm("scancel", f"{job}_{x}")
        requeued, y = _held_trial(name, hold, x, time.monotonic() + 60)
        assert requeued is not None, "the other task never ran a trial:\n" + _logs(tmp_path)
        _slurm("scontrol", "requeue", f"{job}_{y}")
        # Slurm holds a requeued job for ~2 minutes (its EligibleTime); release it now.
        deadline = time.monotonic() + 60
        while _job_field(f"{job}_{y}", "JobState") != "PENDING":
            assert time.monotonic() < deadline, _job_field(f"{job}_{y}", "JobState")
            time.sleep(0.2)
        _slurm("scontrol", "update", f"JobId={job}_{y}", "StartTime=now")
        (hold / "go").touch()  # both signals landed in held trials: let the rest run

        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            queue = subprocess.run(["squeue", "-h", "-j", job], capture_output=True,
                                   text=True, timeout=30).stdout.strip()
            if not queue:
                break
            time.sleep(0.5)
        assert not queue, f"the array job is still queued or running:\n{queue}\n" + _logs(
            tmp_path)

        ts = trials(PG_URL, name)
        check = check_study(ts, BUDGET, seeds=SEEDS)
        failed = {t.number: t for t in ts if t.state == TrialState.FAIL}
        assert sorted(failed) == sorted([cancelled.number, requeued.number]), _logs(tmp_path)
        copies = {}
        for victim in (cancelled, requeued):
            assert failed[victim.number].user_attrs[FAIL_REASON_ATTR] == "interrupted (SIGTERM)"
            # Its one direct copy (the requeued task's trial may be the cancelled one's copy:
            # then that copy failed too, and its own copy completed).
            (copy,) = [t for t in ts if (t.system_attrs.get("retry_history") or [None])[-1]
                       == victim.number]
            assert copy.params == failed[victim.number].params
            assert copy.state == TrialState.COMPLETE or copy.number in failed, copy
            copies[victim.number] = copy.number

        assert _job_field(f"{job}_{x}", "JobState") == "CANCELLED"
        assert _job_field(f"{job}_{y}", "JobState") == "COMPLETED", _logs(tmp_path)
        assert _job_field(f"{job}_{y}", "Restarts") == "1"
        x_log = (tmp_path / f"task-{x}.log").read_text()
        y_log = (tmp_path / f"task-{y}.log").read_text()
        assert "worker done (signal SIGTERM): " in x_log, x_log
        # --open-mode=append: the requeued task's second run adds to its log.
        assert "restart 0" in y_log and "restart 1" in y_log, y_log
        assert "worker done (signal SIGTERM): " in y_log and "worker done (budget" in y_log, (
            y_log)
        assert "Traceback" not in _logs(tmp_path)
        if os.environ.get("HPO_SLURM_SHOW_LOGS"):
            print(_logs(tmp_path))
        took = [(t.datetime_complete - t.datetime_start).total_seconds() for t in ts
                if t.state == TrialState.COMPLETE]
        print(f"\nSlurm: task {x} cancelled while trial {cancelled.number} trained, task {y} "
              f"requeued while trial {requeued.number} trained; re-queued as "
              f"{sorted(copies.values())}; {check.finished}/{BUDGET} finished "
              f"({dict(check.reasons)}); trials took {min(took):.1f}-{max(took):.1f} s")
    finally:
        if job is not None:
            subprocess.run(["scancel", job], capture_output=True, timeout=30)
        delete_study(PG_URL, name)


def _logs(folder: Path) -> str:
    return "\n".join(f"== {p.name}:\n{p.read_text()}" for p in sorted(folder.glob("task-*.log")))


@pytest.mark.parametrize(("args", "unset", "says"), [
    ([], "HPO_STUDY", "no study name"),
    (["somestudy"], "HPO_STORAGE", "HPO_STORAGE is not set"),
])
def test_the_script_refuses_to_start_without_a_study_or_a_storage(args, unset, says) -> None:
    """Run outside Slurm (bash ignores the #SBATCH lines): one line, exit 2, no worker."""
    run_env = {**env(), "HPO_STORAGE": "postgresql+psycopg2://u@h/db", "HPO_STUDY": ""}
    run_env.pop(unset)
    out = subprocess.run(["bash", str(SCRIPT), *args], env=run_env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2, out
    assert out.stdout == "" and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert says in out.stderr and "fix:" in out.stderr
