"""``hpo reproduce epfl-volume``: the EPFL reproduction's volume sweeps, then their report.

Parsing and printing only: :func:`hpo.analysis.reproduce.epfl_volume.reproduce_epfl_volume`
builds the probe study (:mod:`hpo.config.reproduce.epfl_volume`), runs it locally as ``hpo
run`` does (a re-run resumes) and writes the report. Prints the verdict and a table on
stdout (or, with ``--json``, only one JSON object); CSV and HTML go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys

from hpo.cli.base import Command, int_arg
from hpo.errors import UsageError

__all__ = ["EpflVolume"]


class EpflVolume(Command):
    help = "the EPFL reproduction's volume experiment (float16 .half(), no zero_grad)"
    description = (
        "Martorella et al. (ReScience C 2023), notebooks/Volume estimation.ipynb: fc nets on "
        "MNIST, two nets with ReLU'(0) = 0 and 1 see one pass in order without zero_grad; an "
        "init counts when the first layer's accumulated weight gradients differ. Depth "
        "{1,2,3,5,6}, width {4,...,64}, batch {16,...,256} and sample size {10k,...,60k} "
        "(drawn with replacement) at float16 (.half()), float32 and float64, beside their "
        "counts with exact binomial intervals and their defects. A re-run resumes the study."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        p = parser
        p.add_argument("--inits", type=int_arg, metavar="K",
                       help="initialisations per cell (default 100, theirs; --quick: 6)")
        p.add_argument("--quick", action="store_true",
                       help="7 cells (each sweep's ends), 6 inits, the first 5000 images per "
                       "pass: a sanity run of under 10 minutes on 2 CPU cores, NOT their "
                       "protocol (the study name and the report say so)")
        p.add_argument("--workers", type=int_arg, default=1, metavar="N",
                       help="local worker processes (default 1); CPU threads are split")
        p.add_argument("--storage", metavar="URL",
                       help="study storage (default: $HPO_STORAGE or the project's "
                       "storage/hpo.db)")
        p.add_argument("--precisions", nargs="+", metavar="P",
                       help="a subset of float16 float32 float64 (default: all three)")
        p.add_argument("--images", type=int_arg, metavar="N",
                       help="only the first N training images per pass (depth, width and "
                       "batch sweeps): smoke tests, NOT their protocol (default: all 60000)")
        p.add_argument("--out", metavar="DIR", default="results",
                       help="folder for the CSV and HTML report (default: results)")
        p.add_argument("--data-dir", metavar="DIR",
                       help="dataset folder (default: $HPO_DATA_DIR)")
        p.add_argument("--log-dir", metavar="DIR", help="worker logs (default: logs/<study>)")
        p.add_argument("--json", action="store_true",
                       help="print only one JSON object (verdict, cells, defects, platform)")

    def take_action(self, args: argparse.Namespace) -> int:
        from hpo.analysis.reproduce.epfl_volume import format_text, reproduce_epfl_volume
        from hpo.storage.urls import mask_url

        if args.workers < 1:
            raise UsageError(f"--workers {args.workers} is not allowed: an integer >= 1; "
                             "fix: e.g. --workers 2.")
        done = reproduce_epfl_volume(
            inits=args.inits, quick=args.quick, precisions=args.precisions,
            images=args.images, workers=args.workers, storage=args.storage, output=args.out,
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
