"""``hpo create|worker|run|status|export|dashboard``: the study service from the shell.

One class per command: parsing and printing only; each action is one call of
:mod:`hpo.worker.local` or :mod:`hpo.analysis.api`. Results go to stdout, progress and
errors to stderr. A storage password is never printed. Storage URL, first found:
``--storage``, ``$HPO_STORAGE``, the study file's ``storage:``, the project's
``storage/hpo.db`` (:func:`hpo.worker.local.load_config`).
"""

from __future__ import annotations

import argparse
import sys

from hpo.cli.base import (
    STORAGE_HELP,
    Command,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from hpo.errors import UsageError

__all__ = ["Create", "Dashboard", "Export", "Run", "Status", "Worker"]

_RETRY_HELP = ("seconds a worker keeps retrying an unreachable storage before it gives up "
               "(default 600; 0: give up at the first error)")
_DATA_HELP = "dataset folder (default: $HPO_DATA_DIR)"
_N_TRIALS_HELP = "search trials (overrides the file's n_trials)"


class Create(Command):
    help = "create a study and queue its baseline trials"
    description = "Create the study described by CONFIG (idempotent) and queue its baseline "\
        "trials once."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", metavar="CONFIG", help="study YAML file")
        parser.add_argument("--storage", metavar="URL", help=STORAGE_HELP)
        parser.add_argument("--n-trials", type=non_negative_int, metavar="N", help=_N_TRIALS_HELP)

    def take_action(self, args: argparse.Namespace) -> int:
        from hpo.storage.urls import mask_url
        from hpo.worker.local import create, load_config

        cfg = load_config(args.config, storage=args.storage, n_trials=args.n_trials)
        study = create(cfg)
        n_baseline = len(cfg.baseline_trials())
        twins = "; plus one twin per tuned trial" if cfg.baseline and cfg.baseline.paired else ""
        print(f"study {study.study_name} in {mask_url(cfg.storage)}: budget {cfg.total_budget} "
              f"trials ({cfg.n_trials} search + {n_baseline} baseline{twins})")
        print(f"start workers with: hpo worker {args.config}"
              + (" --storage URL" if args.storage else ""))
        return 0


class Worker(Command):
    help = "run trials of a study until its budget is spent"
    description = "Pull and run trials until the study's total budget is finished, counted "\
        "across all workers on all machines."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", metavar="CONFIG", nargs="?", help="study YAML file")
        parser.add_argument("--study", metavar="NAME", help="study name (instead of CONFIG)")
        parser.add_argument("--storage", metavar="URL", help=STORAGE_HELP)
        parser.add_argument("--threads", type=positive_int, metavar="N", help="torch CPU threads")
        parser.add_argument("--worker-index", type=non_negative_int, metavar="I",
                            help="offsets the sampler seed (default: a random seed)")
        parser.add_argument("--data-dir", metavar="DIR", help=_DATA_HELP)
        parser.add_argument("--storage-retry", type=non_negative_float, default=None,
                            metavar="S", help=_RETRY_HELP)

    def take_action(self, args: argparse.Namespace) -> int:
        from hpo.storage.urls import resolve_storage_url
        from hpo.worker.local import load_config, run_worker

        if args.config and args.study:
            raise UsageError("give CONFIG or --study NAME, not both; fix: drop one of them.")
        if args.config:
            cfg = load_config(args.config, storage=args.storage)
            name, url = cfg.name, cfg.storage
        elif args.study:
            name, url = args.study, resolve_storage_url(None, args.storage)
        else:
            raise UsageError("no study given; allowed: CONFIG or --study NAME; fix: "
                             "hpo worker study_configs/quickstart.yaml.")
        stats = run_worker(name, url, threads=args.threads, worker_index=args.worker_index,
                           data_dir=args.data_dir, storage_retry_s=args.storage_retry)
        print(f"worker done ({stats.stopped_by}): {stats.completed} complete, {stats.pruned} "
              f"pruned, {stats.failed} failed, {stats.discarded} discarded, "
              f"{stats.wall_s:.1f} s"
              + (f"; storage unreachable for {stats.storage_outage_s:.1f} s "
                 f"({stats.storage_retries} retries)" if stats.storage_retries else ""))
        return 128 + stats.signal if stats.signal else 0


class Run(Command):
    help = "create a study and run N local workers with progress"
    description = "Create the study, run N worker processes on this machine until the "\
        "budget is spent, show progress, print a summary. Ctrl-C stops the workers cleanly; "\
        "running again resumes."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", metavar="CONFIG", help="study YAML file")
        parser.add_argument("--workers", type=positive_int, default=1, metavar="N",
                            help="worker processes (default 1); CPU threads are split between "
                            "them")
        parser.add_argument("--n-trials", type=non_negative_int, metavar="N", help=_N_TRIALS_HELP)
        parser.add_argument("--storage", metavar="URL", help=STORAGE_HELP)
        parser.add_argument("--data-dir", metavar="DIR", help=_DATA_HELP)
        parser.add_argument("--storage-retry", type=non_negative_float, default=None,
                            metavar="S", help=_RETRY_HELP)
        parser.add_argument("--log-dir", metavar="DIR",
                            help="worker log files (default: logs/<study name>)")
        parser.add_argument("--poll-interval", type=float, default=2.0, metavar="S",
                            help="seconds between progress updates (default 2)")

    def take_action(self, args: argparse.Namespace) -> int:
        from hpo.worker.local import run_study
        from hpo.worker.progress import format_duration, format_status

        run = run_study(args.config, workers=args.workers, storage=args.storage,
                        n_trials=args.n_trials, log_dir=args.log_dir, data_dir=args.data_dir,
                        poll_interval=args.poll_interval, debug=args.debug,
                        storage_retry_s=args.storage_retry, announce=_to_stderr)
        for line in format_status(run.final):
            print(line)
        print(f"  elapsed {format_duration(run.elapsed_s)}")
        for line in run.problems():
            _to_stderr(line)
        return run.exit_code


class Status(Command):
    help = "trial counts, best trial and baseline of studies"
    description = "Show trial counts by state, the best trial and the baseline result "\
        "(mean/std) of one study, or of every study."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("study", metavar="STUDY", nargs="?",
                            help="study name or study YAML file (default: every study in the "
                            "storage, and the other databases under the project's storage/)")
        parser.add_argument("--storage", metavar="URL", help=STORAGE_HELP)

    def take_action(self, args: argparse.Namespace) -> int:
        from hpo.storage.urls import mask_url, resolve_storage_url
        from hpo.worker.local import status, study_ref
        from hpo.worker.lookup import storage_overview
        from hpo.worker.progress import format_status

        if args.study is None:
            for line in storage_overview(resolve_storage_url(None, args.storage)):
                print(line)
            return 0
        ref = study_ref(args.study, args.storage)
        snap = status(ref)
        print(f"storage {mask_url(ref.url)}")
        for line in format_status(snap):
            print(line)
        return 0


class Export(Command):
    help = "write a study's trials to CSV"
    description = "One CSV row per trial, ready for a notebook: study, number, state, value, "\
        "the study's fixed settings (model, dataset, epochs ...), parameters, seed and twin "\
        "links (integers), accuracies per epoch in percent (*_pct), training loss, kink hits "\
        "per epoch and per layer, timing. Platform columns constant over the trials go to "\
        "<name>.platform.json beside the CSV (--inline-platform keeps them in the table)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("study", metavar="STUDY", nargs="?",
                            help="study name or study YAML file")
        parser.add_argument("--all", action="store_true",
                            help="every study, one CSV each into DIR")
        parser.add_argument("--output", "-o", metavar="PATH", help="CSV file (default "
                            "<study>.csv), or folder with --all (default exports)")
        parser.add_argument("--inline-platform", action="store_true",
                            help="keep every platform_* column in the CSV (default: those "
                            "constant over the trials go to <name>.platform.json)")
        parser.add_argument("--storage", metavar="URL", help=STORAGE_HELP)

    def take_action(self, args: argparse.Namespace) -> int:
        from hpo.analysis.api import export, export_every
        from hpo.analysis.export import platform_path, safe_file_name
        from hpo.worker.local import study_ref

        inline = args.inline_platform
        if args.all:
            if args.study:
                raise UsageError("give STUDY or --all, not both; fix: drop one of them.")
            for path in export_every(args.storage, args.output or "exports",
                                     inline_platform=inline):
                side = platform_path(path)
                print(f"wrote {path}" + (f" and {side.name}" if side.exists() else ""))
            return 0
        if not args.study:
            raise UsageError("no study given; allowed: STUDY (a name or YAML file) or --all; "
                             "fix: hpo export quickstart --output quickstart.csv.")
        ref = study_ref(args.study, args.storage)
        output = args.output or f"{safe_file_name(ref.name)}.csv"
        df = export(ref, path=output, inline_platform=inline)
        print(f"wrote {len(df)} trials of {ref.name} to {output}")
        if df.attrs.get("platform"):
            print(f"platform columns constant over its trials: {platform_path(output)}")
        return 0


class Dashboard(Command):
    help = "serve optuna-dashboard on the study storage"

    def __init__(self) -> None:
        from hpo.analysis.dashboard import DEFAULT_HOST, DEFAULT_PORT

        self.host, self.port = DEFAULT_HOST, DEFAULT_PORT
        self.description = ("Serve optuna-dashboard on the storage, every study in it "
                            "(without CONFIG or --storage: the project's storage/hpo.db); "
                            f"bound to {DEFAULT_HOST} unless --host says otherwise.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", metavar="CONFIG", nargs="?", help="study YAML file")
        parser.add_argument("--storage", metavar="URL", help=STORAGE_HELP)
        parser.add_argument("--host", default=self.host,
                            help=f"address to bind (default {self.host}: this machine only)")
        parser.add_argument("--port", type=int, default=self.port,
                            help=f"port (default {self.port})")
        parser.add_argument("--artifacts", metavar="DIR",
                            help="artifact folder to serve (default: $HPO_ARTIFACT_DIR, "
                            "artifacts/ beside a SQLite file, else storage/artifacts): where "
                            "hpo compare puts its reports")

    def take_action(self, args: argparse.Namespace) -> int:
        from hpo.analysis.dashboard import serve
        from hpo.storage.urls import resolve_storage_url
        from hpo.worker.local import load_config

        url = (load_config(args.config, storage=args.storage).storage if args.config
               else resolve_storage_url(None, args.storage))
        serve(url, host=args.host, port=args.port, announce=lambda s: print(s, flush=True),
              artifact_dir=args.artifacts)
        return 0


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)
