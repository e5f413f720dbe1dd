"""``hpo reproduce epfl-initial``: the EPFL reproduction's initial experiment as a study.

Parsing and printing only: :func:`hpo.analysis.reproduce.epfl_initial.reproduce_epfl_initial`
builds the study (:mod:`hpo.config.reproduce.epfl_initial`), runs it locally as ``hpo run``
does (a re-run resumes) and writes the report. Prints a table on stdout (or, with ``--json``,
only one JSON object); the CSV and HTML files go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys

from hpo.cli.base import Command, int_arg
from hpo.errors import UsageError

__all__ = ["EpflInitial"]


class EpflInitial(Command):
    help = "EPFL initial experiment: weight divergence of FC 784-2000-10 per ReLU'(0)"
    description = (
        "The EPFL reproduction's initial experiment (notebooks/initial_experiment.ipynb): FC "
        "784-2000-10 on MNIST, seed 42069, batch 128 without shuffling, Adam lr 1e-3, 2 "
        "epochs, test accuracy per epoch. Each trial trains one ReLU'(0) in {0, 0.25, 0.5, "
        "0.75, 1} beside a ReLU'(0)=0 reference at float32, bfloat16 or float16 and reports "
        "per epoch the true L1 distance AND their |sum(w0) - sum(w1)|, beside their numbers "
        "and defects. alpha 0 is the \"0 vs 0\" control. A re-run resumes the study."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        p = parser
        p.add_argument("--quick", action="store_true",
                       help="alphas 0 and 1 on the first 6000 training images (NOT their "
                       "protocol; the study name and report say so): minutes on 2 CPU cores")
        p.add_argument("--workers", type=int_arg, default=1, metavar="N",
                       help="local worker processes (default 1); CPU threads are split")
        p.add_argument("--storage", metavar="URL",
                       help="study storage (default: $HPO_STORAGE or the project's "
                       "storage/hpo.db)")
        p.add_argument("--precisions", nargs="+", metavar="P",
                       help="a subset of float32 bfloat16 float16 (default: all three)")
        p.add_argument("--train-subset", type=int_arg, metavar="N",
                       help="only the first N training images: smoke tests, NOT their "
                       "protocol (default: all; --quick: 6000)")
        p.add_argument("--out", metavar="DIR", default="results",
                       help="folder for the CSV and HTML report (default: results)")
        p.add_argument("--data-dir", metavar="DIR",
                       help="dataset folder (default: $HPO_DATA_DIR)")
        p.add_argument("--log-dir", metavar="DIR", help="worker logs (default: logs/<study>)")
        p.add_argument("--json", action="store_true",
                       help="print only one JSON object (ours beside theirs, defects, "
                       "platform) on stdout")

    def take_action(self, args: argparse.Namespace) -> int:
        from hpo.analysis.reproduce.epfl_initial import format_text, reproduce_epfl_initial
        from hpo.storage.urls import mask_url

        if args.workers < 1:
            raise UsageError(f"--workers {args.workers} is not allowed: an integer >= 1; "
                             "fix: e.g. --workers 2.")
        done = reproduce_epfl_initial(
            quick=args.quick, precisions=args.precisions, train_subset=args.train_subset,
            workers=args.workers, storage=args.storage, output=args.out,
            data_dir=args.data_dir, log_dir=args.log_dir, debug=args.debug,
            announce=lambda line: print(line, file=sys.stderr),
        )
        if args.json:
            payload = {**done.report.to_dict(), "storage": mask_url(done.run.config.storage),
                       "elapsed_s": round(done.run.elapsed_s, 3),
                       "files": [str(path) for path in done.files]}
            json.dump(payload, sys.stdout)
            sys.stdout.write("\n")
        else:
            for line in format_text(done.report):
                print(line)
            print(f"elapsed {done.run.elapsed_s:.1f} s; wrote " + ", ".join(map(str, done.files)))
        for line in done.run.problems():
            print(line, file=sys.stderr)
        return done.run.exit_code
