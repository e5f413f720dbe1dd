"""``hpo probe``: how often do two values of ReLU'(0) give different gradients?

Parses flags into a :class:`~hpo.engine.spec.TrainSpec` and calls
:func:`hpo.engine.probe.bifurcation.run_probe`; ``--json`` prints one JSON object. Settings
that only matter to training (``--lr``, ``--epochs`` ...) have no flag here: the probe makes
no parameter updates. When no activation input landed exactly on a kink, one line says so
(:func:`hpo.analysis.hints.no_kink_line`; ``no_kink`` in the JSON, else null).
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from hpo.cli.base import Command, add_run_arguments, emit
from hpo.cli.spec_flags import add_spec_arguments, spec_from_args
from hpo.engine.checks import derivative_note

__all__ = ["Probe"]

log = logging.getLogger(__name__)

_PROGRESS_EVERY_S = 10.0


class Probe(Command):
    help = "measure how often two values of ReLU'(0) give different gradients"
    description = (
        "For K initialisations, go through one epoch of mini-batches without "
        "parameter updates and compare, bitwise, the gradients of two networks that differ "
        "only in ReLU'(0); report the fraction of inits that bifurcated, the per-mini-batch "
        "hazard and the samples seen before the first difference."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_spec_arguments(parser, exclude=("relu_prime_zero",), training=False, notes={
            "model": "fc is batched and fast; CNNs are probed one by one",
            "relu6_prime_six": "the same in both networks",
            "seed": "init k uses seed + k",
        })
        parser.add_argument("--inits", type=int, default=100, help="initialisations (default: 100)")
        parser.add_argument(
            "--alphas", type=float, nargs=2, default=[0.0, 1.0], metavar=("A", "B"),
            help="the two values of ReLU'(0) to compare (default: 0 1)",
        )
        parser.add_argument(
            "--compare", choices=("first", "first_weight", "all"), default="first",
            help="compare the first layer's gradients, its weight gradient alone (as the paper's "
            "Section 3) or all (default: first)",
        )
        parser.add_argument(
            "--method", choices=("auto", "batched", "reference"), default="auto",
            help="batched: all fc inits at once; reference: the engine's models one init at a "
            "time (default: auto)",
        )
        add_run_arguments(parser)

    def take_action(self, args: argparse.Namespace) -> int:
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import torch

    from hpo.engine.probe.bifurcation import run_probe

    spec = spec_from_args(args)
    for note in (derivative_note("relu_prime_zero", a, spec.activation, spec.negative_slope)
                 for a in args.alphas):
        if note:
            log.warning("%s", note)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    result = run_probe(
        spec, inits=args.inits, alphas=tuple(args.alphas), compare=args.compare,
        data_dir=args.data_dir, progress=_progress_logger(), method=args.method,
    )
    payload = result.to_dict()
    payload["no_kink"] = _no_kink(payload)
    return emit(payload, args.json, lambda: _print_human(payload))


def _no_kink(p: dict[str, Any]) -> str | None:
    """The no-kink line when no examined mini-batch had an activation input on a kink."""
    from hpo.analysis.hints import no_kink_line

    if p["kinked_batches"] or not p["batches_examined"]:
        return None
    return no_kink_line(f"the {p['batches_examined']} mini-batches examined")


def _progress_logger() -> Any:
    last = [time.perf_counter()]

    def progress(p: Any) -> None:
        if time.perf_counter() - last[0] >= _PROGRESS_EVERY_S:
            last[0] = time.perf_counter()
            log.info("probe: %d/%d mini-batches examined, %d bifurcated, %.0f s",
                     p.batches_examined, p.batches_total, p.bifurcated, p.elapsed_s)

    return progress


def _print_human(p: dict[str, Any]) -> None:
    s = p["spec"]
    a, b = p["alphas"]
    net = f"fc {s['depth']}x{s['width']}" if s["model"] == "fc" else s["model"]
    seeds = p["init_seeds"]
    print(f"bifurcation probe: ReLU'(0) = {a:g} vs {b:g}, {p['compare']}-layer gradients "
          f"compared bitwise ({p['method']} method)")
    print(f"{net} ({s['activation']}) on {s['dataset']}, {s['precision']}, batch "
          f"{s['batch_size']}, {p['train_samples']} training samples = "
          f"{p['batches_per_epoch']} mini-batches, seeds {seeds[0]}..{seeds[-1]}")
    print(f"bifurcated within one epoch: {p['bifurcated']}/{p['inits']} inits "
          f"({p['bifurcated_fraction']:.3f})")
    print(f"hazard per mini-batch: {p['hazard_per_batch']:.5f} ({p['bifurcated']} / "
          f"{p['batches_examined']} mini-batches examined; {p['kinked_batches']} had an "
          "activation input exactly at 0)")
    done = [x for x in p["samples_to_bifurcation"] if x is not None]
    if done:
        print(f"samples seen up to the first difference: median "
              f"{p['median_samples_to_bifurcation']:g} (min {min(done)}, max {max(done)})")
    else:
        print("samples seen up to the first difference: n/a (no init bifurcated)")
    print(f"wall time {p['wall_time_s']:.1f} s ({p['init_time_s']:.1f} s building inits), "
          f"{p['threads']} thread(s) on {p['device']}, torch {p['torch_version']}")
    from hpo.engine.numerics.platform import platform_summary

    print(f"platform: {platform_summary(p['platform'])}")
    if p["no_kink"]:
        print(p["no_kink"])
