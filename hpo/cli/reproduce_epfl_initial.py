"""``hpo reproduce epfl-initial``: the EPFL reproduction's initial experiment as a study.

Parsing and printing only: :func:`hpo.analysis.reproduce.epfl_initial.reproduce_epfl_initial`
builds the study (:mod:`hpo.config.reproduce.epfl_initial`), runs it locally as ``hpo run``
does (a re-run resumes) and writes the report. Prints a table on stdout (or, with ``--json``,
only one JSON object); the CSV and HTML files go to ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from hpo.cli.base import int_arg
from hpo.cli.reproduce_base import Reproduction

__all__ = ["EpflInitial"]


class EpflInitial(Reproduction):
    help = "EPFL initial experiment: weight divergence of FC 784-2000-10 per ReLU'(0)"
    description = (
        "The EPFL reproduction's initial experiment (notebooks/initial_experiment.ipynb): FC "
        "784-2000-10 on MNIST, seed 42069, batch 128 without shuffling, Adam lr 1e-3, 2 "
        "epochs, test accuracy per epoch. Each trial trains one ReLU'(0) in {0, 0.25, 0.5, "
        "0.75, 1} beside a ReLU'(0)=0 reference at float32, bfloat16 or float16 and reports "
        "per epoch the true L1 distance AND their |sum(w0) - sum(w1)|, beside their numbers "
        "and defects. alpha 0 is the \"0 vs 0\" control. A re-run resumes the study."
    )

    json_help = "print only one JSON object (ours beside theirs, defects, platform) on stdout"

    def add_target_arguments(self, parser: argparse.ArgumentParser) -> None:
        p = parser
        p.add_argument("--quick", action="store_true",
                       help="alphas 0 and 1 on the first 6000 training images (NOT their "
                       "protocol; the study name and report say so): minutes on 2 CPU cores")
        p.add_argument("--precisions", nargs="+", metavar="P",
                       help="a subset of float32 bfloat16 float16 (default: all three)")
        p.add_argument("--train-subset", type=int_arg, metavar="N",
                       help="only the first N training images: smoke tests, NOT their "
                       "protocol (default: all; --quick: 6000)")

    def reproduce(self, args: argparse.Namespace, **common: Any
                  ) -> tuple[Any, Callable[[Any], Iterable[str]]]:
        from hpo.analysis.reproduce.epfl_initial import format_text, reproduce_epfl_initial

        return reproduce_epfl_initial(quick=args.quick, precisions=args.precisions,
                                      train_subset=args.train_subset, **common), format_text
