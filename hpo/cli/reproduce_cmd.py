"""``hpo reproduce TARGET``: a published experiment as a study, then its report.

Parsing and printing only. The targets' table is :attr:`Reproduce.EXPERIMENTS`; ``section3``
lives here (:func:`hpo.analysis.api.reproduce_section3` does the work), the others in
``reproduce_section4``, ``reproduce_epfl`` (fc, hpo), ``reproduce_epfl_initial`` and
``reproduce_epfl_volume``. Each prints a table (or, with ``--json``, one JSON object) and
writes CSV and HTML files to ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from hpo.cli.base import Command, int_arg
from hpo.cli.reproduce_base import Reproduction
from hpo.cli.reproduce_epfl import EpflFc, EpflHpo
from hpo.cli.reproduce_epfl_initial import EpflInitial
from hpo.cli.reproduce_epfl_volume import EpflVolume
from hpo.cli.reproduce_section4 import Section4

__all__ = ["Reproduce", "Section3"]


class Section3(Reproduction):
    help = "bifurcation volume of MNIST MLPs (depth, width, batch sweeps)"
    description = (
        "Section 3: fc nets on MNIST (ToTensor inputs, all 60000 training images, one epoch "
        "without updates); the fraction of inits whose first-layer gradients differ bitwise "
        "between ReLU'(0) = 0 and 1, for depth in {1,2,3,5,6}, width in {16,...,1024} and "
        "batch size in {16,...,1024}, at float16, float32 and float64, beside the paper's "
        "counts. A re-run of the same command resumes the study."
    )

    json_help = "print only one JSON object (cells and platform) on stdout"

    def add_target_arguments(self, parser: argparse.ArgumentParser) -> None:
        p = parser
        p.add_argument("--inits", type=int_arg, metavar="K",
                       help="initialisations per cell (default 100; --quick: 10)")
        p.add_argument("--quick", action="store_true",
                       help="7 of the 13 cells (each sweep's ends and middle) and 10 inits: a "
                       "sanity run of minutes on 2 CPU cores")
        p.add_argument("--precisions", nargs="+", metavar="P",
                       help="a subset of float16 float32 float64 (default: all three)")
        p.add_argument("--train-subset", type=int_arg, metavar="N",
                       help="only the first N training images: smoke tests, NOT the paper's "
                       "protocol (default: all 60000)")

    def reproduce(self, args: argparse.Namespace, **common: Any
                  ) -> tuple[Any, Callable[[Any], Iterable[str]]]:
        from hpo.analysis.api import reproduce_section3
        from hpo.analysis.reproduce.section3 import format_text

        return reproduce_section3(inits=args.inits, quick=args.quick,
                                  precisions=args.precisions, train_subset=args.train_subset,
                                  **common), format_text


class Reproduce(Command):
    help = "reproduce a published experiment as a study, beside its numbers"
    description = ("Reproduce a measurement of Bertoin et al. (NeurIPS 2021: section3, "
                   "section4) or of the EPFL reproduction (ReScience C 2023: epfl-initial, "
                   "epfl-fc, epfl-hpo, epfl-volume) through the study service (workers, "
                   "resume, status, dashboard, export), reported beside the published numbers.")
    EXPERIMENTS: ClassVar[dict[str, type[Command]]] = {
        "section3": Section3,
        "section4": Section4,
        "epfl-initial": EpflInitial,
        "epfl-fc": EpflFc,
        "epfl-hpo": EpflHpo,
        "epfl-volume": EpflVolume,
    }

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        what = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT",
                                     parser_class=type(parser))
        what.required = True
        for name, experiment in self.EXPERIMENTS.items():
            experiment().register(what, name)
