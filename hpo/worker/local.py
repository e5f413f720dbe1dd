"""Run a study on this machine: the one path behind ``hpo run`` and ``hpo reproduce``.

:func:`load_config` reads a study from a YAML file or a dict and settles its storage URL and
``n_trials``; :func:`run_study` checks device, storage and data, creates the study and runs N
worker processes (:func:`hpo.worker.pool.run_local`); :class:`StudyRun` holds the outcome,
its exit code and the report of failed workers. :func:`create`, :func:`status` and
:func:`run_worker` are ``hpo create``, ``hpo status`` and ``hpo worker`` as functions.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import optuna

from hpo.config.study import DICT_SOURCE, StudyConfig, load_study_config
from hpo.errors import UsageError
from hpo.storage.rdb import make_storage
from hpo.storage.urls import mask_url, resolve_storage_url, warn_password_in_file
from hpo.study.create import create_study
from hpo.worker.lookup import load_existing_study, open_existing_storage
from hpo.worker.outcomes import WorkerStats
from hpo.worker.pool import LocalRun, check_data, check_device, open_worker, run_local, set_threads
from hpo.worker.progress import StudySnapshot, snapshot

__all__ = [
    "DICT_SOURCE",
    "StudyRef",
    "StudyRun",
    "StudySource",
    "create",
    "load_config",
    "run_study",
    "run_worker",
    "status",
    "study_ref",
]

log = logging.getLogger(__name__)

StudySource = str | os.PathLike | Mapping[str, Any] | StudyConfig
"""A study file's path, a dict laid out as a study file, or a loaded :class:`StudyConfig`."""

_YAML_SUFFIXES = (".yaml", ".yml")


def load_config(
    source: StudySource, *, storage: str | None = None, n_trials: int | None = None
) -> StudyConfig:
    """A validated study config with its storage URL settled.

    Args:
        source: a study YAML file, a dict in the same layout, or a :class:`StudyConfig`.
        storage: a storage URL that wins over the rest. The URL is, first found: this,
            ``$HPO_STORAGE``, the study's ``storage:``, the project's ``storage/hpo.db``.
        n_trials: replaces the study's ``n_trials`` (search trials; baselines are extra).

    Raises:
        ConfigError: the file or dict is invalid (one line naming the key and the fix).
        UsageError: ``n_trials`` is not an integer >= 0.
    """
    if isinstance(source, StudyConfig):
        cfg = source
        url = resolve_storage_url(cfg.storage, storage)
    else:
        cfg = load_study_config(source)
        url = resolve_storage_url(cfg.storage, storage)
        if url == cfg.storage:  # the study's own storage: (the default holds no password)
            warn_password_in_file(url, cfg.source)
    cfg = dataclasses.replace(cfg, storage=url)
    if n_trials is not None:
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 0:
            raise UsageError(f"n_trials {n_trials!r} is not allowed: an integer >= 0; fix: "
                             "e.g. n_trials=10.")
        cfg = dataclasses.replace(cfg, n_trials=n_trials)
    return cfg


class StudyRef(NamedTuple):
    """A study's name and the URL of its storage, as :func:`study_ref` settles them."""

    name: str
    url: str


def study_ref(study: str | os.PathLike | StudyConfig | StudyRef, storage: str | None = None
              ) -> StudyRef:
    """The name and storage URL of a study given by name, study file, config or
    :class:`StudyRef`; a file's ``storage:`` counts (after ``storage`` and ``$HPO_STORAGE``),
    as in :func:`load_config`, which also warns about a password in the file."""
    if isinstance(study, StudyRef):
        return StudyRef(study.name, storage or study.url)
    if isinstance(study, StudyConfig) or str(study).endswith(_YAML_SUFFIXES) or (
        Path(study).is_file()
    ):
        cfg = load_config(study, storage=storage)
        return StudyRef(cfg.name, cfg.storage)
    return StudyRef(str(study), resolve_storage_url(None, storage))


def create(
    config: StudySource, *, storage: str | None = None, n_trials: int | None = None
) -> optuna.Study:
    """``hpo create``: create the study (idempotent) and queue its baseline trials once."""
    cfg = load_config(config, storage=storage, n_trials=n_trials)
    return create_study(cfg, cfg.storage)  # by URL: its messages show the URL as given


def status(study: str | os.PathLike | StudyConfig | StudyRef, *, storage: str | None = None
           ) -> StudySnapshot:
    """``hpo status STUDY``: trial counts by state, the best trial, the baseline result."""
    name, url = study_ref(study, storage)
    return snapshot(load_existing_study(name, url)[0])


def run_worker(
    study_name: str,
    url: str,
    *,
    threads: int | None = None,
    worker_index: int | None = None,
    data_dir: str | os.PathLike | None = None,
    storage_retry_s: float | None = None,
) -> WorkerStats:
    """``hpo worker``: run trials of an existing study in this process until its budget is
    spent (or a signal stops it). A missing database or study is an error, never created."""
    open_existing_storage(url, study=study_name).engine.dispose()
    set_threads(threads)
    retry = {} if storage_retry_s is None else {"storage_retry_s": storage_retry_s}
    worker = open_worker(study_name, url, worker_index=worker_index, data_dir=data_dir, **retry)
    return worker.run()


@dataclass
class StudyRun:
    """What :func:`run_study` did: the study, its workers' outcome, and the exit code."""

    config: StudyConfig  # as run: its storage is the URL used
    study: optuna.Study
    log_dir: Path
    workers: LocalRun

    @property
    def ok(self) -> bool:
        """No signal stopped the run and every worker exited with 0."""
        return self.workers.ok

    @property
    def exit_code(self) -> int:
        """``128 + signal`` when stopped by one, 1 when a worker failed, else 0."""
        if self.workers.signal is not None:
            return 128 + self.workers.signal
        return 1 if any(code != 0 for code in self.workers.exit_codes) else 0

    @property
    def final(self) -> StudySnapshot | None:
        """The study's state once the workers stopped."""
        return self.workers.final

    @property
    def elapsed_s(self) -> float:
        return self.workers.elapsed_s

    def problems(self) -> list[str]:
        """What went wrong, as ``hpo`` prints it to stderr: the signal that stopped the run,
        or each failed worker's exit code and the end of its log (empty when :attr:`ok`)."""
        if self.workers.signal is not None:
            name = signal.Signals(self.workers.signal).name
            return [f"hpo: stopped by {name}; running trials were re-queued; run the same "
                    "command again to resume"]
        lines = []
        for index, code in enumerate(self.workers.exit_codes):
            if code != 0:
                path = self.workers.logs[index]
                lines.append(f"hpo: error: worker {index} exited with {code}; its log {path} "
                             "ends with:")
                lines += [f"  {line}" for line in _tail(path, 5)]
        return lines


def run_study(
    config: StudySource,
    *,
    workers: int = 1,
    storage: str | None = None,
    n_trials: int | None = None,
    log_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    poll_interval: float = 2.0,
    debug: bool = False,
    storage_retry_s: float | None = None,
    stream: TextIO | None = None,
    announce: Callable[[str], None] | None = None,
    summary: str | None = None,
) -> StudyRun:
    """``hpo run``: create the study and run ``workers`` worker processes on this machine
    until its budget is spent; running it again resumes.

    Checked before anything is written: the device (tf32 needs CUDA), the storage, the data
    (downloaded once here, not by N workers). Progress goes to ``stream`` (default stderr).

    Args:
        log_dir: the workers' log files (default ``logs/<study name>``).
        announce: receives the one line saying where the study runs (default: logged).
        summary: what that line says of the budget (default ``budget N trials``).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers {workers!r} is not allowed: an integer >= 1; fix: e.g. "
                         "workers=2.")
    cfg = load_config(config, storage=storage, n_trials=n_trials)
    url = cfg.storage
    check_device(cfg)  # the local workers would refuse tf32 without CUDA: say so first
    make_storage(url).engine.dispose()  # unreachable: fail before a possible download
    check_data(cfg, data_dir)  # before the study is written; downloads once, not N times
    study = create_study(cfg, url)  # by URL: its messages show the URL as given
    folder = Path(log_dir) if log_dir is not None else Path("logs") / cfg.name
    (announce or log.info)(
        f"study {cfg.name} in {mask_url(url)}: {summary or f'budget {cfg.total_budget} trials'}"
        f", {workers} workers (logs in {folder})"
    )
    outcome = run_local(cfg.name, url, workers, log_dir=folder, data_dir=data_dir,
                        poll_interval=poll_interval, stream=stream, debug=debug,
                        storage_retry_s=storage_retry_s)
    return StudyRun(cfg, study, folder, outcome)


def _tail(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []
