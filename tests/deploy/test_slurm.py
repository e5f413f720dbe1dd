"""The shipped Slurm array script (``deploy/slurm/hpo-worker.sbatch``) on a real one-node
cluster (``deploy/slurm/local-cluster.sh``, started by ``.ci/run``) against PostgreSQL: two
array tasks train a small fc net on real MNIST; one task is cancelled (``scancel``) while it
trains, and the study still ends with exactly its budget, nothing RUNNING, the cancelled
trial failed as interrupted and its re-queued copy completed by the other task.

Without a cluster the test is skipped, unless ``CI`` is set: then it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hpo.config.study import load_study_config
from hpo.storage.rdb import make_storage
from hpo.study.create import create_study
from hpo.study.requeue import WORKER_ATTR
from hpo.worker.loop import FAIL_REASON_ATTR
from tests.faults.harness import PG_URL, check_study, delete_study, env, trials

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "slurm" / "hpo-worker.sbatch"
DATA = os.environ.get("HPO_DATA_DIR")
N_TRIALS, SEEDS = 4, 2
BUDGET = N_TRIALS + SEEDS
STUDY = """\
name: {name}
n_trials: {n_trials}
sampler: {{name: random, seed: 0}}
pruner: {{name: none}}
heartbeat: {{interval: 1, grace: 5}}
train: {{model: fc, depth: 2, width: 64, train_subset: 10000, val_size: 1000, epochs: 8}}
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
        return f"slurmctld is not up ({(ping.stdout + ping.stderr).strip()})"
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


def test_scancel_of_a_task_requeues_its_trial_and_the_array_ends_at_the_budget(
    cluster, tmp_path
) -> None:
    name = f"slurm-{uuid.uuid4().hex[:8]}"
    config = tmp_path / f"{name}.yaml"
    config.write_text(STUDY.format(name=name, n_trials=N_TRIALS, seeds=SEEDS))
    storage = make_storage(PG_URL)
    create_study(load_study_config(config), storage)
    storage.engine.dispose()
    job = None
    try:
        job_env = {**env(), "HPO_STORAGE": PG_URL}
        submit = subprocess.run(
            ["sbatch", "--parsable", "--array=0-1", f"--output={tmp_path}/task-%a.log",
             str(SCRIPT), name],
            cwd=tmp_path, env=job_env, capture_output=True, text=True, timeout=60)
        assert submit.returncode == 0, submit.stderr
        job = submit.stdout.strip().split(";")[0]

        # Wait until a trial trains under a worker of a known array task, then cancel it.
        deadline = time.monotonic() + 90
        victim = task = None
        while victim is None and time.monotonic() < deadline:
            for t in trials(PG_URL, name):
                # A trial that started under a second ago (trials last seconds): the
                # cancel lands while it trains, not between two trials.
                if (t.state == TrialState.RUNNING and WORKER_ATTR in t.user_attrs
                        and datetime.now() - t.datetime_start < timedelta(seconds=1)):
                    task = _array_task_of(t.user_attrs[WORKER_ATTR])
                    if task is not None:
                        victim = t
                        break
            else:
                time.sleep(0.2)
        assert victim is not None, "no trial ever ran:\n" + _logs(tmp_path)
        cancel = subprocess.run(["scancel", f"{job}_{task}"], capture_output=True, text=True,
                                timeout=30)
        assert cancel.returncode == 0, cancel.stderr

        # The other task finishes the budget.
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
        assert list(failed) == [victim.number], _logs(tmp_path)
        assert failed[victim.number].user_attrs[FAIL_REASON_ATTR] == "interrupted (SIGTERM)"
        copies = [t for t in ts if t.system_attrs.get("failed_trial") == victim.number]
        assert [c.state for c in copies] == [TrialState.COMPLETE]
        assert copies[0].params == victim.params

        other = "1" if task == "0" else "0"
        assert _job_field(f"{job}_{task}", "JobState") == "CANCELLED"
        assert _job_field(f"{job}_{other}", "JobState") == "COMPLETED", _logs(tmp_path)
        cancelled_log = (tmp_path / f"task-{task}.log").read_text()
        assert "worker done (signal SIGTERM): " in cancelled_log, cancelled_log
        assert "Traceback" not in _logs(tmp_path)
        took = [(t.datetime_complete - t.datetime_start).total_seconds() for t in ts
                if t.state == TrialState.COMPLETE]
        print(f"\nSlurm: task {task} cancelled while trial {victim.number} trained; "
              f"trial re-queued as {copies[0].number} and completed; "
              f"{check.finished}/{BUDGET} finished ({dict(check.reasons)}); trials took "
              f"{min(took):.1f}-{max(took):.1f} s")
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
