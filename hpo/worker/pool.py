"""Worker processes: open one worker on a storage, or run N of them locally with progress.

``hpo worker`` runs :func:`open_worker`'s worker. :func:`run_local` (called by
:func:`hpo.worker.local.run_study`, for ``hpo run`` and ``hpo reproduce``) starts N
``python -m hpo worker`` processes (the same command a user starts on another
machine), gives each its share of the CPU threads (and, when there are GPUs, one GPU each
through ``CUDA_VISIBLE_DEVICES``, round-robin: more workers than GPUs share them),
prints progress by polling the storage and forwards Ctrl-C/SIGTERM to the workers so they
fail and re-queue their current trial before exiting.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import optuna
from optuna.distributions import CategoricalDistribution

from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError, StorageError
from hpo.objective import TrainFn, make_objective
from hpo.storage.rdb import make_storage
from hpo.storage.retry import DEFAULT_GIVE_UP_S, describe, storage_fault
from hpo.storage.urls import ENV_VAR, mask_url
from hpo.study.create import open_study
from hpo.worker.lookup import check_study_models
from hpo.worker.loop import Worker
from hpo.worker.progress import ProgressMonitor, StudySnapshot, snapshot

if TYPE_CHECKING:
    from hpo.config.study import StudyConfig

__all__ = [
    "LocalRun",
    "WorkerPlan",
    "check_data",
    "check_device",
    "open_worker",
    "plan_workers",
    "run_local",
    "set_threads",
]

log = logging.getLogger(__name__)


def set_threads(n: int | None) -> None:
    """Set torch's intra-op threads for this process (``None``: leave torch's default)."""
    if n is None:
        return
    import torch

    torch.set_num_threads(max(int(n), 1))


def open_worker(
    study_name: str,
    url: str,
    *,
    worker_index: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    train_fn: TrainFn | None = None,
    poll_interval: float = 2.0,
    storage_retry_s: float = DEFAULT_GIVE_UP_S,
) -> Worker:
    """Load a study (with the config stored in it) and build a worker for it.

    Args:
        worker_index: Offsets the sampler seed so parallel workers do not draw the same
            points; ``None`` (a worker started by hand) reseeds the sampler randomly.
        storage_retry_s: How long the worker keeps retrying a storage that became
            unreachable before it gives up (see :class:`hpo.worker.loop.Worker`).

    Raises:
        StudyNotFoundError: no such study in the storage.
        StorageError: the storage cannot be reached.
    """
    # load_study reopens the storage with the heartbeat settings stored in the study.
    study, cfg, storage = open_study(study_name, url, seed_offset=worker_index or 0)
    if worker_index is None:
        study.sampler.reseed_rng()
    if train_fn is None:  # the real engine: fail on missing data before taking a trial
        check_study_models(cfg)  # as `hpo worker CONFIG` does when it loads the file
        check_data(cfg, data_dir)
        check_device(cfg)
    objective = make_objective(cfg, train_fn=train_fn, data_dir=data_dir)
    return Worker(
        study,
        objective,
        storage=storage,
        timeout=cfg.timeout,
        poll_interval=poll_interval,
        max_retry=cfg.heartbeat.max_retry,
        storage_retry_s=storage_retry_s,
    )


def check_data(cfg: StudyConfig, data_dir: str | os.PathLike[str] | None = None) -> None:
    """Verify the files of every dataset the study's trials train on, downloading missing
    ones into the cache: done before a study or trial is written, and once by ``hpo run``
    rather than by N workers at once.

    Raises:
        ConfigError: an image folder without ``train/``/``test/``, with mismatched classes
            or without images.
        DataError: a file is corrupt, or missing and cannot be downloaded.
    """
    from hpo.engine.data.loading import verify_dataset

    for name in _setting_values(cfg, "dataset"):
        verify_dataset(name, data_dir)


def check_device(cfg: StudyConfig) -> None:
    """Refuse, before a trial is taken, to run on this machine a study whose trials may
    train in ``tf32`` on a device that resolves to the CPU here (``device: auto`` without
    CUDA; ``device: cpu`` with ``tf32`` is already rejected when the file is loaded). Done
    by every worker, where the device is resolved, not by ``hpo create``: the study may be
    meant for GPU workers on other machines.

    Raises:
        ConfigError: ``tf32`` is among the study's precisions and this machine has no CUDA.
    """
    if "tf32" not in _setting_values(cfg, "precision"):
        return
    from hpo.engine.numerics.flags import check_tf32_device
    from hpo.engine.train import resolve_device

    for name in _setting_values(cfg, "device"):
        try:
            check_tf32_device("tf32", resolve_device(name), name)
        except ConfigError as exc:
            raise ConfigError(f"{cfg.source}: {exc}") from None


def _setting_values(cfg: StudyConfig, name: str) -> list[Any]:
    """The values a training setting takes in the study: its searched choices, else the
    fixed value (``train:`` or TrainSpec's default)."""
    searched = cfg.search_space.get(name)
    if isinstance(searched, CategoricalDistribution):
        return list(searched.choices)
    return [cfg.fixed.get(name, getattr(TrainSpec(), name))]


@dataclass(frozen=True)
class WorkerPlan:
    """How one local worker process is started."""

    index: int
    threads: int
    cuda_device: str | None = None


def plan_workers(
    n: int, *, cpus: int | None = None, gpus: list[str] | None = None
) -> list[WorkerPlan]:
    """Split the CPU threads evenly (at least one each) and give each worker one GPU,
    round-robin: worker ``i`` gets ``gpus[i % len(gpus)]``, so ``n`` may exceed the GPUs
    (several workers per GPU keep it busy while one evaluates or waits on the storage)."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max((cpus or 1) // n, 1)
    return [
        WorkerPlan(i, threads, gpus[i % len(gpus)] if gpus else None) for i in range(n)
    ]


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries."""
    import torch

    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [d.strip() for d in visible.split(",") if d.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


@dataclass
class LocalRun:
    """What :func:`run_local` saw: each worker's exit code and log file, and the end state."""

    exit_codes: list[int] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    signal: int | None = None
    final: StudySnapshot | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.signal is None and all(code == 0 for code in self.exit_codes)


def run_local(
    study_name: str,
    url: str,
    n_workers: int,
    *,
    log_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    poll_interval: float = 2.0,
    stream: TextIO | None = None,
    gpus: list[str] | None = None,
    debug: bool = False,
    storage_retry_s: float | None = None,
) -> LocalRun:
    """Run ``n_workers`` worker processes on this machine until the study's budget is spent.

    The storage URL reaches the workers through ``$HPO_STORAGE``, not their command line,
    so a password never shows in ``ps``. While the storage is unreachable the progress line
    pauses (the workers retry on their own, for ``storage_retry_s``; ``None``: their
    default) instead of stopping the run.
    """
    study = optuna.load_study(study_name=study_name, storage=make_storage(url))
    log_path = Path(log_dir)
    log_path.mkdir(parents=True, exist_ok=True)
    plans = plan_workers(n_workers, gpus=visible_gpus() if gpus is None else gpus)
    outcome = LocalRun()
    procs: list[subprocess.Popen[bytes]] = []
    monitor = ProgressMonitor(study, stream)
    signals_seen: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        signals_seen.append(signum)
        # First signal: let workers fail and re-queue their trial. Second: stop them now.
        sent = signum if len(signals_seen) == 1 else signal.SIGKILL
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sent)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for plan in plans:
            if signals_seen:
                break  # stopped while starting: start no more
            path = log_path / f"worker-{plan.index}.log"
            outcome.logs.append(path)
            with open(path, "ab") as log_file:
                procs.append(
                    subprocess.Popen(
                        _worker_command(study_name, plan, data_dir, debug, storage_retry_s),
                        env=_worker_env(url, plan),
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        # Own process group: a terminal's Ctrl-C reaches only this process,
                        # which forwards it exactly once.
                        start_new_session=True,
                    )
                )
        log.debug("started %d workers (logs in %s)", len(procs), log_path)
        next_poll = 0.0
        while any(proc.poll() is None for proc in procs):
            if time.monotonic() >= next_poll:
                _poll(monitor, url)
                next_poll = time.monotonic() + poll_interval
            time.sleep(0.1)
        outcome.final = _poll(monitor, url, final=True)
    finally:
        monitor.close()
        for proc in procs:
            if proc.poll() is None:  # only when this process itself failed
                proc.kill()
            proc.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    outcome.exit_codes = [proc.returncode for proc in procs]
    outcome.signal = signals_seen[0] if signals_seen else None
    outcome.elapsed_s = time.monotonic() - monitor.started
    if outcome.final is None:
        outcome.final = snapshot(study)
    return outcome


def _poll(monitor: ProgressMonitor, url: str, *, final: bool = False) -> StudySnapshot | None:
    """One progress update; ``None`` while the storage is unreachable (the workers retry)."""
    try:
        return monitor.update()
    except Exception as exc:
        fault = storage_fault(exc)
        if fault is None:
            raise
        if final:
            raise StorageError(
                f"storage {mask_url(url)} {fault} after the workers stopped ({describe(exc)}); "
                "fix: once it is back, `hpo status` shows where the study stands."
            ) from exc
        log.warning("progress paused: storage %s %s (%s); the workers retry on their own",
                    mask_url(url), fault, describe(exc))
        return None


def _worker_command(
    study_name: str,
    plan: WorkerPlan,
    data_dir: str | os.PathLike[str] | None,
    debug: bool,
    storage_retry_s: float | None = None,
) -> list[str]:
    cmd = [sys.executable, "-m", "hpo"]
    if debug:
        cmd.append("--debug")
    cmd += ["worker", "--study", study_name, "--threads", str(plan.threads),
            "--worker-index", str(plan.index)]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    if storage_retry_s is not None:
        cmd += ["--storage-retry", f"{storage_retry_s:g}"]
    return cmd


def _worker_env(url: str, plan: WorkerPlan) -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_VAR] = url
    # The worker imports this very package, wherever it was imported from.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    if plan.cuda_device is not None:
        env["CUDA_VISIBLE_DEVICES"] = plan.cuda_device
    # Each worker gets its share of the cores; stop BLAS/OpenMP from taking them all.
    env["OMP_NUM_THREADS"] = str(plan.threads)
    return env
