"""``hpo reproduce section4``: the paper's Section 4 protocols as studies, then their report.

Parsing and printing only: :func:`hpo.analysis.reproduce.section4.reproduce_section4` builds
one study per protocol from its study file (:mod:`hpo.config.reproduce.section4`), runs them
locally as ``hpo run`` does (a re-run resumes) and writes the report. Prints a table on stdout
(or, with ``--json``, only one JSON object); the CSV and HTML files go to ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from hpo.cli.base import int_arg
from hpo.cli.reproduce_base import Reproduction

__all__ = ["Section4"]


class Section4(Reproduction):
    help = "ReLU'(0) in ResNet18/VGG11 training on CIFAR10 and SVHN (accuracy per alpha)"
    description = (
        "Section 4.3: ResNet18 + SGD on CIFAR10 (200 epochs), VGG11 + Adam on CIFAR10 (200) "
        "and SVHN (100), with and without batch norm, each ReLU'(0) at its tuned learning "
        "rate, the same seeds at every alpha; last-epoch test accuracy (mean, 95%% CI), the "
        "paired difference to ReLU'(0) = 0 and the collapse point, beside the paper's "
        "numbers. The full protocol is for GPUs (see README); --quick is a CPU sanity run. "
        "A re-run of the same command resumes the studies."
    )

    json_help = "print only one JSON object (cells, paper, collapse) on stdout"
    log_help = "worker logs, one folder per study (default: logs/<study>)"

    def add_target_arguments(self, parser: argparse.ArgumentParser) -> None:
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

    def reproduce(self, args: argparse.Namespace, **common: Any
                  ) -> tuple[Any, Callable[[Any], Iterable[str]]]:
        from hpo.analysis.reproduce.section4 import format_text, reproduce_section4

        return reproduce_section4(model=args.model, dataset=args.dataset,
                                  batch_norm=args.batch_norm, quick=args.quick, seeds=args.seeds,
                                  epochs=args.epochs, **common), format_text
