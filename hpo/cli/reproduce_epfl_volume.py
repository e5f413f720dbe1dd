"""``hpo reproduce epfl-volume``: the EPFL reproduction's volume sweeps, then their report.

Parsing and printing only: :func:`hpo.analysis.reproduce.epfl_volume.reproduce_epfl_volume`
builds the probe study (:mod:`hpo.config.reproduce.epfl_volume`), runs it locally as ``hpo
run`` does (a re-run resumes) and writes the report. Prints the verdict and a table on
stdout (or, with ``--json``, only one JSON object); CSV and HTML go to ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from hpo.cli.base import int_arg
from hpo.cli.reproduce_base import Reproduction

__all__ = ["EpflVolume"]


class EpflVolume(Reproduction):
    help = "the EPFL reproduction's volume experiment (float16 .half(), no zero_grad)"
    description = (
        "Martorella et al. (ReScience C 2023), notebooks/Volume estimation.ipynb: fc nets on "
        "MNIST, two nets with ReLU'(0) = 0 and 1 see one pass in order without zero_grad; an "
        "init counts when the first layer's accumulated weight gradients differ. Depth "
        "{1,2,3,5,6}, width {4,...,64}, batch {16,...,256} and sample size {10k,...,60k} "
        "(drawn with replacement) at float16 (.half()), float32 and float64, beside their "
        "counts with exact binomial intervals and their defects. A re-run resumes the study."
    )

    json_help = "print only one JSON object (verdict, cells, defects, platform)"

    def add_target_arguments(self, parser: argparse.ArgumentParser) -> None:
        p = parser
        p.add_argument("--inits", type=int_arg, metavar="K",
                       help="initialisations per cell (default 100, theirs; --quick: 6)")
        p.add_argument("--quick", action="store_true",
                       help="7 cells (each sweep's ends), 6 inits, the first 5000 images per "
                       "pass: a sanity run of under 10 minutes on 2 CPU cores, NOT their "
                       "protocol (the study name and the report say so)")
        p.add_argument("--precisions", nargs="+", metavar="P",
                       help="a subset of float16 float32 float64 (default: all three)")
        p.add_argument("--images", type=int_arg, metavar="N",
                       help="only the first N training images per pass (depth, width and "
                       "batch sweeps): smoke tests, NOT their protocol (default: all 60000)")

    def reproduce(self, args: argparse.Namespace, **common: Any
                  ) -> tuple[Any, Callable[[Any], Iterable[str]]]:
        from hpo.analysis.reproduce.epfl_volume import format_text, reproduce_epfl_volume

        return reproduce_epfl_volume(inits=args.inits, quick=args.quick,
                                     precisions=args.precisions, images=args.images,
                                     **common), format_text
