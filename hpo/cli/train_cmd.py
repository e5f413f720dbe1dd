"""``hpo train``: one training run from flags; ``--json`` prints one JSON object.

The flags are generated from :class:`~hpo.engine.spec.TrainSpec`'s field table
(:mod:`hpo.cli.spec_flags`), so every training setting has exactly one flag and nothing can
be accepted and then silently dropped.
"""

from __future__ import annotations

import argparse
from typing import Any

from hpo.cli.base import Command, add_run_arguments, emit
from hpo.cli.spec_flags import add_spec_arguments, spec_from_args

__all__ = ["Train"]

class Train(Command):
    help = "train one model and report accuracy and kink hits"
    description = (
        "Train one model with a chosen ReLU'(0) and report per-epoch validation "
        "accuracy, test accuracy and how often backward passes hit a kink."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_spec_arguments(parser)
        add_run_arguments(parser)

    def take_action(self, args: argparse.Namespace) -> int:
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)  # first: a bad flag fails without the seconds torch takes

    import torch

    from hpo.engine.models.build import check_model
    from hpo.engine.train import train

    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    check_model(spec)  # a model that does not build or run fails before data is touched
    result = train(spec, data_dir=args.data_dir)
    payload = {"spec": spec.to_dict(), **result.to_dict()}
    return emit(payload, args.json, lambda: _print_human(payload))


def _print_human(p: dict[str, Any]) -> None:
    from hpo.engine.numerics.platform import platform_summary

    accs = ", ".join(f"{a:.4f}" for a in p["val_accuracy"])
    test = "n/a" if p["test_accuracy"] is None else f"{p['test_accuracy']:.4f}"
    print(f"val_accuracy per epoch: [{accs}]")
    print(f"test_accuracy: {test}")
    print(f"kink_hits: {p['kink_hits']} (per epoch {p['kink_hits_per_epoch']})")
    print(f"configured_activations: {p['configured_activations']}")
    print(f"diverged: {p['diverged']}" + (f" ({p['divergence_reason']})" if p["diverged"] else ""))
    print(f"precision: {p['precision']} on {p['device']}, "
          f"{p['samples_per_second']:.0f} samples/s, {p['wall_time_s']:.1f} s")
    print(f"params_sha256: {p['params_sha256']}")
    print(f"platform: {platform_summary(p['platform'])}")
