"""``hpo create|worker|run|status|export|dashboard``: the study service from the shell.

Parsing and printing only; the work is done in the layers below (study, worker, analysis).
Results go to stdout, progress and errors to stderr. A storage password is never printed.

Storage URL, first found: ``--storage``, ``$HPO_STORAGE``, the study file's ``storage:``,
the project's one database ``storage/hpo.db`` (:mod:`hpo.storage.project`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from pathlib import Path

from hpo.errors import UsageError

__all__ = ["register"]

log = logging.getLogger(__name__)

_STORAGE_HELP = (
    "study storage URL (default: $HPO_STORAGE, the study file's storage:, or the project's "
    "storage/hpo.db), e.g. postgresql://user@host:5432/db (psycopg2)"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("create", help="create a study and queue its baseline trials",
                       description="Create the study described by CONFIG (idempotent) and "
                       "queue its baseline trials once.")
    p.add_argument("config", metavar="CONFIG", help="study YAML file")
    p.add_argument("--storage", metavar="URL", help=_STORAGE_HELP)
    p.add_argument("--n-trials", type=_non_negative_int, metavar="N",
                   help="search trials (overrides the file's n_trials)")
    p.set_defaults(handler=_create)

    p = sub.add_parser("worker", help="run trials of a study until its budget is spent",
                       description="Pull and run trials until the study's total budget is "
                       "finished, counted across all workers on all machines.")
    p.add_argument("config", metavar="CONFIG", nargs="?", help="study YAML file")
    p.add_argument("--study", metavar="NAME", help="study name (instead of CONFIG)")
    p.add_argument("--storage", metavar="URL", help=_STORAGE_HELP)
    p.add_argument("--threads", type=_positive_int, metavar="N", help="torch CPU threads")
    p.add_argument("--worker-index", type=_non_negative_int, metavar="I",
                   help="offsets the sampler seed (default: a random seed)")
    p.add_argument("--data-dir", metavar="DIR", help="dataset folder (default: $HPO_DATA_DIR)")
    p.add_argument("--storage-retry", type=_non_negative_float, default=None, metavar="S",
                   help="seconds a worker keeps retrying an unreachable storage before it "
                   "gives up (default 600; 0: give up at the first error)")
    p.set_defaults(handler=_worker)

    p = sub.add_parser("run", help="create a study and run N local workers with progress",
                       description="Create the study, run N worker processes on this "
                       "machine until the budget is spent, show progress, print a summary. "
                       "Ctrl-C stops the workers cleanly; running again resumes.")
    p.add_argument("config", metavar="CONFIG", help="study YAML file")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="worker processes (default 1); CPU threads are split between them")
    p.add_argument("--n-trials", type=_non_negative_int, metavar="N",
                   help="search trials (overrides the file's n_trials)")
    p.add_argument("--storage", metavar="URL", help=_STORAGE_HELP)
    p.add_argument("--data-dir", metavar="DIR", help="dataset folder (default: $HPO_DATA_DIR)")
    p.add_argument("--storage-retry", type=_non_negative_float, default=None, metavar="S",
                   help="seconds a worker keeps retrying an unreachable storage before it "
                   "gives up (default 600; 0: give up at the first error)")
    p.add_argument("--log-dir", metavar="DIR",
                   help="worker log files (default: logs/<study name>)")
    p.add_argument("--poll-interval", type=float, default=2.0, metavar="S",
                   help="seconds between progress updates (default 2)")
    p.set_defaults(handler=_run)

    p = sub.add_parser("status", help="trial counts, best trial and baseline of studies",
                       description="Show trial counts by state, the best trial and the "
                       "baseline result (mean/std) of one study, or of every study.")
    p.add_argument("study", metavar="STUDY", nargs="?",
                   help="study name or study YAML file (default: every study in the storage, "
                   "and the other databases under the project's storage/)")
    p.add_argument("--storage", metavar="URL", help=_STORAGE_HELP)
    p.set_defaults(handler=_status)

    p = sub.add_parser("export", help="write a study's trials to CSV",
                       description="One CSV row per trial: number, state, value, parameters, "
                       "baseline tag, seed, accuracies per epoch, kink hits, timing.")
    p.add_argument("study", metavar="STUDY", nargs="?", help="study name or study YAML file")
    p.add_argument("--all", action="store_true", help="every study, one CSV each into DIR")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="CSV file (default <study>.csv), or folder with --all (default exports)")
    p.add_argument("--storage", metavar="URL", help=_STORAGE_HELP)
    p.set_defaults(handler=_export)

    from hpo.analysis.dashboard import DEFAULT_HOST, DEFAULT_PORT

    p = sub.add_parser("dashboard", help="serve optuna-dashboard on the study storage",
                       description="Serve optuna-dashboard on the storage, every study in "
                       "it (without CONFIG or --storage: the project's storage/hpo.db); "
                       f"bound to {DEFAULT_HOST} unless --host says otherwise.")
    p.add_argument("config", metavar="CONFIG", nargs="?", help="study YAML file")
    p.add_argument("--storage", metavar="URL", help=_STORAGE_HELP)
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--artifacts", metavar="DIR",
                   help="artifact folder to serve (default: $HPO_ARTIFACT_DIR, artifacts/ "
                   "beside a SQLite file, else storage/artifacts): where hpo compare puts its "
                   "reports")
    p.set_defaults(handler=_dashboard)


# ----------------------------------------------------------------------------------
def _create(args: argparse.Namespace) -> int:
    from hpo.storage.urls import mask_url
    from hpo.study.create import create_study

    cfg, url = _load_config(args.config, args.storage, args.n_trials)
    study = create_study(cfg, url)
    n_baseline = len(cfg.baseline_trials())
    twins = "; plus one twin per tuned trial" if cfg.baseline and cfg.baseline.paired else ""
    print(f"study {study.study_name} in {mask_url(url)}: budget {cfg.total_budget} trials "
          f"({cfg.n_trials} search + {n_baseline} baseline{twins})")
    print(f"start workers with: hpo worker {args.config}"
          + (" --storage URL" if args.storage else ""))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from hpo.storage.urls import resolve_storage_url
    from hpo.worker.lookup import open_existing_storage
    from hpo.worker.pool import open_worker, set_threads

    if args.config and args.study:
        raise UsageError("give CONFIG or --study NAME, not both; fix: drop one of them.")
    if args.config:
        cfg, url = _load_config(args.config, args.storage)
        name = cfg.name
    elif args.study:
        name, url = args.study, resolve_storage_url(None, args.storage)
    else:
        raise UsageError("no study given; allowed: CONFIG or --study NAME; fix: "
                         "hpo worker study_configs/quickstart.yaml.")
    # A mistyped name or path must not leave an empty SQLite database behind.
    open_existing_storage(url, study=name).engine.dispose()
    set_threads(args.threads)
    retry = {} if args.storage_retry is None else {"storage_retry_s": args.storage_retry}
    worker = open_worker(name, url, worker_index=args.worker_index, data_dir=args.data_dir,
                         **retry)
    stats = worker.run()
    print(f"worker done ({stats.stopped_by}): {stats.completed} complete, {stats.pruned} "
          f"pruned, {stats.failed} failed, {stats.discarded} discarded, "
          f"{stats.wall_s:.1f} s"
          + (f"; storage unreachable for {stats.storage_outage_s:.1f} s "
             f"({stats.storage_retries} retries)" if stats.storage_retries else ""))
    return 128 + stats.signal if stats.signal else 0


def _run(args: argparse.Namespace) -> int:
    from hpo.storage.rdb import make_storage
    from hpo.storage.urls import mask_url
    from hpo.study.create import create_study
    from hpo.worker.pool import check_data, check_device, run_local
    from hpo.worker.progress import format_duration, format_status

    cfg, url = _load_config(args.config, args.storage, args.n_trials)
    check_device(cfg)  # the local workers would refuse tf32 without CUDA: say so first
    make_storage(url).engine.dispose()  # unreachable: fail before a possible download
    check_data(cfg, args.data_dir)  # before the study is written; downloads once, not N times
    create_study(cfg, url)  # by URL: its messages show the URL as given
    log_dir = args.log_dir or str(Path("logs") / cfg.name)
    print(f"study {cfg.name} in {mask_url(url)}: budget {cfg.total_budget} trials, "
          f"{args.workers} workers (logs in {log_dir})", file=sys.stderr)
    outcome = run_local(cfg.name, url, args.workers, log_dir=log_dir,
                        data_dir=args.data_dir, poll_interval=args.poll_interval,
                        debug=args.debug, storage_retry_s=args.storage_retry)
    for line in format_status(outcome.final):
        print(line)
    print(f"  elapsed {format_duration(outcome.elapsed_s)}")
    if outcome.signal is not None:
        print(f"hpo: stopped by {signal.Signals(outcome.signal).name}; running trials were "
              "re-queued; run the same command again to resume", file=sys.stderr)
        return 128 + outcome.signal
    failed = [(i, code) for i, code in enumerate(outcome.exit_codes) if code != 0]
    for index, code in failed:
        path = outcome.logs[index]
        print(f"hpo: error: worker {index} exited with {code}; its log {path} ends with:",
              file=sys.stderr)
        for line in _tail(path, 5):
            print(f"  {line}", file=sys.stderr)
    return 1 if failed else 0


def _status(args: argparse.Namespace) -> int:
    from hpo.storage.urls import mask_url, resolve_storage_url
    from hpo.worker.lookup import load_existing_study, storage_overview
    from hpo.worker.progress import format_status, snapshot

    if args.study is None:
        for line in storage_overview(resolve_storage_url(None, args.storage)):
            print(line)
        return 0
    name, url = _study_ref(args.study, args.storage)
    study, _ = load_existing_study(name, url)
    print(f"storage {mask_url(url)}")
    for line in format_status(snapshot(study)):
        print(line)
    return 0


def _export(args: argparse.Namespace) -> int:
    from hpo.analysis.export import export_all, export_study
    from hpo.storage.urls import resolve_storage_url
    from hpo.worker.lookup import load_existing_study, open_existing_storage

    if args.all:
        if args.study:
            raise UsageError("give STUDY or --all, not both; fix: drop one of them.")
        url = resolve_storage_url(None, args.storage)
        paths = export_all(open_existing_storage(url), args.output or "exports")
        for path in paths:
            print(f"wrote {path}")
        return 0
    if not args.study:
        raise UsageError("no study given; allowed: STUDY (a name or YAML file) or --all; "
                         "fix: hpo export quickstart --output quickstart.csv.")
    name, url = _study_ref(args.study, args.storage)
    study, _ = load_existing_study(name, url)
    output = args.output or f"{name}.csv"
    rows = export_study(study, output)
    print(f"wrote {rows} trials of {name} to {output}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from hpo.analysis.dashboard import serve
    from hpo.storage.urls import resolve_storage_url

    if args.config:
        _, url = _load_config(args.config, args.storage)
    else:
        url = resolve_storage_url(None, args.storage)
    serve(url, host=args.host, port=args.port, announce=lambda s: print(s, flush=True),
          artifact_dir=args.artifacts)
    return 0


# ----------------------------------------------------------------------------------
def _load_config(path: str, storage_flag: str | None, n_trials: int | None = None):
    """The study file with its storage URL resolved (flag > $HPO_STORAGE > file > default)."""
    from hpo.config.study import load_study_config
    from hpo.storage.urls import resolve_storage_url, warn_password_in_file

    cfg = load_study_config(path)
    url = resolve_storage_url(cfg.storage, storage_flag)
    if url == cfg.storage:  # the file's own storage: (the default holds no password)
        warn_password_in_file(url, cfg.source)
    cfg = dataclasses.replace(cfg, storage=url)
    if n_trials is not None:
        cfg = dataclasses.replace(cfg, n_trials=n_trials)
    return cfg, url


def _study_ref(ref: str, storage_flag: str | None) -> tuple[str, str]:
    """A study name, or a study file (then its name and storage)."""
    from hpo.storage.urls import resolve_storage_url

    if ref.endswith((".yaml", ".yml")) or Path(ref).is_file():
        cfg, url = _load_config(ref, storage_flag)
        return cfg.name, url
    return ref, resolve_storage_url(None, storage_flag)


def _tail(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
