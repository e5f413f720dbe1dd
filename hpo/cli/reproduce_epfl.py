"""``hpo reproduce epfl-fc`` and ``hpo reproduce epfl-hpo``: two experiments of the EPFL
reproduction (Martorella et al., ReScience C 2023) as ordinary studies, then their reports.

Parsing and printing only: :mod:`hpo.analysis.reproduce.epfl_fc` and
:mod:`hpo.analysis.reproduce.epfl_hpo` build, run (a re-run resumes) and report. Prints a
table on stdout (or, with ``--json``, only one JSON object); CSV and HTML go to ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from hpo.cli.base import int_arg
from hpo.cli.reproduce_base import Reproduction

__all__ = ["EpflFc", "EpflHpo"]


class EpflFc(Reproduction):
    help = "EPFL FC sweep: ReLU'(0) grids, 3 precisions, set vs multiply, K seeds"
    description = (
        "The FC sweep of the EPFL reproduction (FC 784-200-200-200-10, MNIST, Adam): ReLU'(0) "
        "in {0,1,2,4,8} for 10 epochs and {0,-0.5,0.5,0.8,1} for 50 epochs, at float32, "
        "bfloat16 and float16, kink_grad set (their code) and multiply (the chain rule), 5 "
        "seeds per cell paired by seed, beside their one-seed numbers. A re-run resumes."
    )

    def add_target_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seeds", type=int_arg, metavar="K",
                            help="seeds per cell (default 5)")
        parser.add_argument("--quick", action="store_true",
                            help="alphas {0,1,8} x 2 epochs and {0,-0.5,1} x 3 epochs on 4000 "
                            "training images: a sanity run of minutes on 2 CPU cores")
        parser.add_argument("--train-subset", type=int_arg, metavar="N",
                            help="only the first N training images: NOT their protocol")
        parser.add_argument("--precisions", nargs="+", metavar="P",
                            help="a subset of float32 bfloat16 float16 (default: all three)")

    def reproduce(self, args: argparse.Namespace, **common: Any
                  ) -> tuple[Any, Callable[[Any], Iterable[str]]]:
        from hpo.analysis.reproduce.epfl_fc import format_text, reproduce_epfl_fc

        return reproduce_epfl_fc(seeds=args.seeds, quick=args.quick, precisions=args.precisions,
                                 train_subset=args.train_subset, **common), format_text


class EpflHpo(Reproduction):
    log_help = "worker logs in DIR/<study>, one folder per study (default: logs/<study>)"
    help = "EPFL subgradient-as-hyperparameter searches (MobileNetV3-small and FC, with/without)"
    description = (
        "The EPFL reproduction's searches with ReLU6'(0) and ReLU6'(6) searched in [0, 1] "
        "('with') or left at PyTorch's 0 ('without'): MobileNetV3-small on 3-channel MNIST (10 "
        "trials x 6 epochs) and FC [2000] (12 x 10), bfloat16, random search with successive "
        "halving (grace 3, reduction 2), scored on 20% of the training set; with against "
        "without as hpo compare --against does, the audit's proof that the derivatives "
        "reached every activation, the best trials beside theirs. A re-run resumes."
    )

    def add_target_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--quick", action="store_true",
                            help="3 MobileNet trials x 2 epochs on 1000 images and 6 FC trials "
                            "x 4 epochs on 5000: a sanity run of minutes on 2 CPU cores")
        parser.add_argument("--models", nargs="+", metavar="M",
                            help="a subset of mobilenet fc (default: both)")
        parser.add_argument("--kink-grad", default="set", metavar="MODE",
                            help="set (their code, default) or multiply (the chain rule)")

    def reproduce(self, args: argparse.Namespace, **common: Any
                  ) -> tuple[Any, Callable[[Any], Iterable[str]]]:
        from hpo.analysis.reproduce.epfl_hpo import format_text, reproduce_epfl_hpo

        return reproduce_epfl_hpo(quick=args.quick, models=args.models,
                                  kink_grad=args.kink_grad, **common), format_text
