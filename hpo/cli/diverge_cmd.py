"""``hpo diverge``: how far ReLU'(0) alone moves the weights, per epoch and precision.

Every training setting has the flag ``hpo train`` gives it, except ``--relu-prime-zero``:
the runs take their ReLU'(0) from ``--alphas`` (and 0 for the reference and the control).
Writes an HTML plot and the JSON result into ``--output`` (file names made safe: no colon
from a ``module:function`` model); ``--json`` prints the JSON. When no run hit a kink, one
line says so (:func:`hpo.analysis.hints.no_kink_line`; ``no_kink`` in the JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hpo.cli.base import Command, add_run_arguments, emit
from hpo.cli.spec_flags import add_spec_arguments, spec_from_args

__all__ = ["Diverge"]

DEFAULT_OUTPUT = "diverge"


class Diverge(Command):
    help = "L1 distance between weights trained with different ReLU'(0)"
    description = (
        "Train runs from identical weights and batch order that differ only in "
        "ReLU'(0) and report, after each epoch, the L1 distance of their parameters from "
        "the ReLU'(0)=0 run, with a second ReLU'(0)=0 run as control."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--alphas", type=float, nargs="+", required=True, metavar="ALPHA",
                            help="ReLU'(0) values to compare with ReLU'(0)=0 (any finite "
                            "value; outside [0, 1] is noted as not a subgradient)")
        parser.add_argument("--precisions", nargs="+", metavar="PRECISION",
                            help="run each of these precisions (default: --precision)")
        add_spec_arguments(parser, exclude=("relu_prime_zero",))
        parser.add_argument("--output", "-o", metavar="DIR", default=DEFAULT_OUTPUT,
                            help=f"folder for the HTML plot and JSON (default: ./{DEFAULT_OUTPUT})")
        add_run_arguments(parser)
        parser.set_defaults(relu_prime_zero=None)

    def take_action(self, args: argparse.Namespace) -> int:
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import torch

    from hpo.analysis.diverge import plot_divergence, run_divergence
    from hpo.analysis.export import safe_file_name

    spec = spec_from_args(args)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    result = run_divergence(
        spec, alphas=args.alphas, precisions=args.precisions, data_dir=args.data_dir
    )
    out = Path(args.output)
    stem = safe_file_name(f"diverge_{spec.model}_{spec.dataset}_seed{spec.seed}")
    plot = plot_divergence(result, out / f"{stem}.html")
    payload = {**result.to_dict(), "no_kink": _no_kink(result), "plot": str(plot),
               "json": str(out / f"{stem}.json")}
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return emit(payload, args.json, lambda: _print_human(result, payload))


def _no_kink(result: Any) -> str | None:
    """The no-kink line when every run's kink-hit count is 0, else None."""
    from hpo.analysis.hints import no_kink_line

    counts = [n for runs in result.kink_hits().values() for n in runs.values()]
    if any(counts):
        return None
    return no_kink_line(f"these {len(counts)} runs")


def _print_human(result: Any, payload: dict[str, Any]) -> None:
    print(f"L1 distance from ReLU'(0)=0 over {result.n_params} parameters, "
          f"epochs {result.epochs[0]}..{result.epochs[-1]}:")
    hits = result.kink_hits()
    for p in result.precisions:
        rows = [("control (0)", result.control_l1[p], hits[p]["control"])]
        rows += [(f"alpha={k}", v, hits[p][k]) for k, v in result.l1[p].items()]
        print(f"  {p} (reference kink hits: {hits[p]['reference']})")
        for name, values, n in rows:
            text = ", ".join("n/a" if v is None else f"{v:.6g}" for v in values)
            print(f"    {name:<14} [{text}]  kink hits: {n}")
    from hpo.engine.numerics.platform import platform_summary

    for p, record in result.platform.items():
        print(f"platform ({p}): {platform_summary(record)}")
    if payload["no_kink"]:
        print(payload["no_kink"])
    print(f"plot: {payload['plot']}")
    print(f"json: {payload['json']}")
