"""``hpo reproduce section4``: the paper's Section 4 protocols as studies, then their report.

Parsing and printing only: :func:`hpo.analysis.reproduce.section4.reproduce_section4` builds
one study per protocol from its study file (:mod:`hpo.config.reproduce.section4`), runs them
locally as ``hpo run`` does (a re-run resumes) and writes the report. Prints a table on stdout
(or, with ``--json``, only one JSON object); the CSV and HTML files go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys

from hpo.cli.base import Command, int_arg
from hpo.errors import UsageError

__all__ = ["Section4"]


class Section4(Command):
    help = "ReLU'(0) in ResNet18/VGG11 training on CIFAR10 and SVHN (accuracy per alpha)"
    description = (
        "Section 4.3: ResNet18 + SGD on CIFAR10 (200 epochs), VGG11 + Adam on CIFAR10 (200) "
        "and SVHN (100), with and without batch norm, each ReLU'(0) at its tuned learning "
        "rate, the same seeds at every alpha; last-epoch test accuracy (mean, 95%% CI), the "
        "paired difference to ReLU'(0) = 0 and the collapse point, beside the paper's "
        "numbers. The full protocol is for GPUs (see README); --quick is a CPU sanity run. "
        "A re-run of the same command resumes the studies."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        p = parser
        p.add_argument("--model", choices=["resnet18", "vgg11"], help="default: both")
        p.add_argument("--dataset", choices=["cifar10", "svhn"], help="default: both")
        p.add_argument("--batch-norm", choices=["both", "on", "off"], default="both",
                       help="default: both")
        p.add_argument("--quick", action="store_true",
                       help="1 epoch on 128 training images, 2 alphas, 2 seeds: a CPU sanity "
                       "run of minutes, NOT comparable to the paper")
        p.add_argument("--seeds", type=int_arg, metavar="K",
                       help="runs per alpha (default: the paper's, 10 on CIFAR10, 5 on SVHN)")
        p.add_argument("--epochs", type=int_arg, metavar="E",
                       help="override the paper's epochs: smoke tests, NOT comparable")
        p.add_argument("--workers", type=int_arg, default=1, metavar="N",
                       help="local worker processes (default 1)")
        p.add_argument("--storage", metavar="URL",
                       help="study storage (default: $HPO_STORAGE or the project's "
                       "storage/hpo.db)")
        p.add_argument("--out", metavar="DIR", default="results",
                       help="folder for the CSV and HTML report (default: results)")
        p.add_argument("--data-dir", metavar="DIR",
                       help="dataset folder (default: $HPO_DATA_DIR)")
        p.add_argument("--log-dir", metavar="DIR",
                       help="worker logs, one folder per study (default: logs/<study>)")
        p.add_argument("--json", action="store_true",
                       help="print only one JSON object (cells, paper, collapse) on stdout")

    def take_action(self, args: argparse.Namespace) -> int:
        from hpo.analysis.reproduce.section4 import format_text, reproduce_section4
        from hpo.storage.urls import mask_url

        if args.workers < 1:
            raise UsageError(f"--workers {args.workers} is not allowed: an integer >= 1; "
                             "fix: e.g. --workers 2.")
        done = reproduce_section4(
            model=args.model, dataset=args.dataset, batch_norm=args.batch_norm,
            quick=args.quick, seeds=args.seeds, epochs=args.epochs, workers=args.workers,
            storage=args.storage, output=args.out, data_dir=args.data_dir,
            log_dir=args.log_dir, debug=args.debug,
            announce=lambda line: print(line, file=sys.stderr),
        )
        if args.json:
            storage = mask_url(done.runs[0].config.storage) if done.runs else None
            payload = {**done.report.to_dict(), "storage": storage,
                       "elapsed_s": round(done.elapsed_s, 3),
                       "files": [str(path) for path in done.files]}
            json.dump(payload, sys.stdout)
            sys.stdout.write("\n")
        else:
            for line in format_text(done.report):
                print(line)
            print(f"elapsed {done.elapsed_s:.1f} s; wrote " + ", ".join(map(str, done.files)))
        for line in done.problems():
            print(line, file=sys.stderr)
        return done.exit_code
