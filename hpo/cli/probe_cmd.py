"""``hpo probe``: how often do two values of ReLU'(0) give different gradients?

Parses flags into a :class:`~hpo.engine.spec.TrainSpec` and calls
:func:`hpo.engine.probe.bifurcation.run_probe`; ``--json`` prints one JSON object. Optimiser
settings
(``--lr``, ``--epochs`` ...) have no flag here: the probe makes no parameter updates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from typing import Any

from hpo.engine import spec as spec_mod
from hpo.engine.spec import TrainSpec

__all__ = ["register"]

log = logging.getLogger(__name__)

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainSpec)}
# (field, type, choices, help): the TrainSpec settings that change what the probe measures.
_SPEC_FLAGS: list[tuple[str, Any, tuple[str, ...] | None, str]] = [
    ("model", str, None, "model: a built-in, a torchvision name or package.module:factory "
     "(fc is batched and fast; CNNs are probed one by one)"),
    ("dataset", str, spec_mod.DATASETS, "dataset"),
    ("depth", int, None, "fc: number of hidden layers"),
    ("width", int, None, "fc: units per hidden layer"),
    ("batch_norm", bool, None, "fc, vgg11, resnet18_cifar: batch normalisation"),
    ("width_mult", float, None, "MobileNetV3 width multiplier"),
    ("activation", str, spec_mod.ACTIVATION_NAMES, "ReLU-family activation"),
    ("relu6_prime_six", float, None, "relu6: derivative at 6 (same in both networks)"),
    ("negative_slope", float, None, "leaky_relu: negative slope"),
    ("kink_grad", str, spec_mod.KINK_GRAD_MODES, "'multiply' (chain rule) or 'set' (paper's code)"),
    ("channels", int, None, "input channels, 1 or 3 (default: 1 for fc, 3 for CNNs)"),
    ("image_size", int, None, "resize images to this size (default: 28; vgg11: 32)"),
    ("normalize", bool, None, "standardise pixels with the dataset's mean and std"),
    ("batch_size", int, None, "mini-batch size"),
    ("train_subset", int, None, "training samples (the sample size; default: all)"),
    ("val_size", int, None, "validation samples split off (not probed)"),
    ("split_seed", int, None, "seed of the train/validation split"),
    ("precision", str, spec_mod.PRECISIONS, "dtype of the whole model (tf32: CUDA only)"),
    ("reduced_precision_reduction", str, spec_mod.REDUCED_PRECISION_REDUCTION,
     "CUDA float16/bfloat16 GEMMs: reduced-precision reductions on, off, or PyTorch's"),
    ("seed", int, None, "init k uses seed + k; the batch order is that of this seed"),
    ("device", str, spec_mod.DEVICES, "cpu, cuda or auto"),
]
_PROGRESS_EVERY_S = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``probe`` sub-command to ``sub``."""
    parser = sub.add_parser(
        "probe",
        help="measure how often two values of ReLU'(0) give different gradients",
        description="For K initialisations, go through one epoch of mini-batches without "
        "parameter updates and compare, bitwise, the gradients of two networks that differ "
        "only in ReLU'(0); report the fraction of inits that bifurcated, the per-mini-batch "
        "hazard and the samples seen before the first difference.",
    )
    for name, kind, choices, text in _SPEC_FLAGS:
        flag = "--" + name.replace("_", "-")
        default = _DEFAULTS[name]
        kwargs: dict[str, Any] = {"dest": name, "default": default}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = kind
            if choices:
                kwargs["choices"] = choices
            else:
                kwargs["metavar"] = name.upper()
        if default is not None and kind is not bool:
            text += f" (default: {default})"
        parser.add_argument(flag, help=text, **kwargs)
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
    parser.add_argument("--data-dir", help="folder with the IDX .gz files (or HPO_DATA_DIR)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from hpo.engine.probe.bifurcation import run_probe

    spec = TrainSpec(**{name: getattr(args, name) for name, *_ in _SPEC_FLAGS})
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    result = run_probe(
        spec, inits=args.inits, alphas=tuple(args.alphas), compare=args.compare,
        data_dir=args.data_dir, progress=_progress_logger(), method=args.method,
    )
    payload = result.to_dict()
    if args.json:
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_human(payload)
    return 0


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
