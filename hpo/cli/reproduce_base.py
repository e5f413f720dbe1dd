"""What every ``hpo reproduce`` target shares: the service flags and the printing.

A target (:class:`Reproduction`) declares its own flags and calls its runner from
``hpo.analysis.reproduce``; this class adds ``--workers``, ``--storage``, ``--out``,
``--data-dir``, ``--log-dir`` and ``--json``, checks them, and prints the report (a table, or
one JSON object with the storage, wall time and files) and the runs' problems.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from hpo.cli.base import Command, int_arg
from hpo.errors import UsageError

__all__ = ["Reproduction"]


class Reproduction(Command):
    """One ``hpo reproduce`` target: :meth:`add_target_arguments` and :meth:`reproduce`."""

    json_help: ClassVar[str] = "print only one JSON object (ours beside theirs, platform)"
    log_help: ClassVar[str] = "worker logs (default: logs/<study>)"

    def add_target_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The target's own flags (``--quick``, ``--inits``, ``--precisions``...)."""

    def reproduce(self, args: argparse.Namespace, **common: Any
                  ) -> tuple[Any, Callable[[Any], Iterable[str]]]:
        """Run the target's runner with its own options and ``common`` (workers, storage,
        output, data_dir, log_dir, debug, announce); return what it returned and the
        function that formats its report as lines."""
        raise NotImplementedError

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        self.add_target_arguments(parser)
        p = parser
        p.add_argument("--workers", type=int_arg, default=1, metavar="N",
                       help="local worker processes (default 1); CPU threads are split")
        p.add_argument("--storage", metavar="URL",
                       help="study storage (default: $HPO_STORAGE or the project's "
                       "storage/hpo.db)")
        p.add_argument("--out", metavar="DIR", default="results",
                       help="folder for the CSV and HTML report (default: results)")
        p.add_argument("--data-dir", metavar="DIR",
                       help="dataset folder (default: $HPO_DATA_DIR)")
        p.add_argument("--log-dir", metavar="DIR", help=self.log_help)
        p.add_argument("--json", action="store_true", help=self.json_help)

    def take_action(self, args: argparse.Namespace) -> int:
        from hpo.storage.urls import mask_url

        if args.workers < 1:
            raise UsageError(f"--workers {args.workers} is not allowed: an integer >= 1; "
                             "fix: e.g. --workers 2.")
        done, format_text = self.reproduce(
            args, workers=args.workers, storage=args.storage, output=args.out,
            data_dir=args.data_dir, log_dir=args.log_dir, debug=args.debug,
            announce=lambda line: print(line, file=sys.stderr),
        )
        runs = list(getattr(done, "runs", None) or [done.run])
        elapsed = sum(run.elapsed_s for run in runs)
        if args.json:
            storage = mask_url(runs[0].config.storage) if runs else None
            json.dump({**done.report.to_dict(), "storage": storage,
                       "elapsed_s": round(elapsed, 3),
                       "files": [str(path) for path in done.files]}, sys.stdout)
            sys.stdout.write("\n")
        else:
            for line in format_text(done.report):
                print(line)
            print(f"elapsed {elapsed:.1f} s; wrote " + ", ".join(map(str, done.files)))
        for line in (line for run in runs for line in run.problems()):
            print(line, file=sys.stderr)
        return max((run.exit_code for run in runs), default=0)
