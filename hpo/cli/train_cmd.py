"""``hpo train``: one training run from flags; ``--json`` prints one JSON object.

The flags are generated from :class:`~hpo.engine.spec.TrainSpec`, so every training setting
has exactly one flag (``relu_prime_zero`` -> ``--relu-prime-zero``) and nothing can be
accepted and then silently dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from typing import Any

from hpo.engine import spec as spec_mod
from hpo.engine.spec import TrainSpec

__all__ = ["add_spec_arguments", "register", "spec_from_args"]

_HELP = {
    "model": "model to train: a built-in (" + ", ".join(spec_mod.MODELS) + "), any "
    "torchvision classification model name (e.g. mnasnet0_5), or your own network as "
    "package.module:factory",
    "dataset": "mnist, fashion_mnist, cifar10, svhn, svhn_extra (SVHN's extra split) or "
    "imagefolder:PATH (PATH/train/<class>/, PATH/test/<class>/, optional PATH/val/)",
    "depth": "fc: number of hidden layers",
    "width": "fc: units per hidden layer",
    "batch_norm": "fc, vgg11, resnet18_cifar: batch normalisation after each linear/conv layer",
    "width_mult": "MobileNetV3 width multiplier",
    "bn_recalibration": "recompute batch-norm statistics from 32 training batches before "
    "each evaluation (short runs leave momentum averages far behind the weights)",
    "activation": "ReLU-family activation used everywhere in the model",
    "relu_prime_zero": "derivative at 0 (default: PyTorch's, 0; leaky_relu: its slope)",
    "relu6_prime_six": "relu6: derivative at 6 (default: PyTorch's, 0)",
    "negative_slope": "leaky_relu: negative slope",
    "kink_grad": "'multiply' (chain rule) or 'set' (the paper's code: gradient := value)",
    "channels": "input channels, 1 or 3 (default: the dataset's; gray datasets: 1 for fc, "
    "3 for CNNs)",
    "image_size": "resize images to this size (default: the dataset's, 28 or 32; image "
    "folders: 32; vgg11: at least 32)",
    "normalize": "standardise pixels with the dataset's mean and std",
    "batch_size": "mini-batch size",
    "train_subset": "number of training samples (the sample size; default: all)",
    "val_size": "validation samples split off the official training set",
    "split_seed": "seed of the train/validation split",
    "precision": "dtype of the whole model; amp_* = float32 weights under autocast; tf32 "
    "(CUDA only) = float32 weights, TF32 matmuls and convolutions (every other precision "
    "runs with TF32 off)",
    "reduced_precision_reduction": "CUDA float16/bfloat16 GEMMs: reduce in reduced precision "
    "(on), never (off), or PyTorch's setting (default; recorded in the result's platform)",
    "optimizer": "optimizer",
    "lr": "learning rate",
    "momentum": "sgd: momentum",
    "adam_eps": "adam: epsilon (default 1e-8; float16: its smallest normal, 6.1e-5)",
    "weight_decay": "weight decay",
    "nesterov": "sgd with momentum: Nesterov momentum",
    "lr_schedule": "learning-rate schedule, stepped once per epoch: none, cosine (from lr "
    "to 0 over the run's epochs) or step (lr * lr_gamma every lr_step_epochs)",
    "lr_step_epochs": "lr_schedule step: epochs between two decays",
    "lr_gamma": "lr_schedule step: decay factor",
    "augment": "training augmentation: none, or crop_flip (random 4-pixel-padded crop and "
    "horizontal flip, batched on the data's device, seeded by seed)",
    "channels_last": "channels_last memory format: auto (CUDA and a conv net), true, false",
    "epochs": "training epochs",
    "seed": "seed of the initial weights and the batch order",
    "device": "cpu, cuda or auto",
}
# ``model`` has no fixed choices (torchvision names, import paths): TrainSpec validates it
# and a bad name is one line listing close matches, exit 2.
_CHOICES = {
    "activation": spec_mod.ACTIVATION_NAMES,
    "kink_grad": spec_mod.KINK_GRAD_MODES,
    "precision": spec_mod.PRECISIONS,
    "reduced_precision_reduction": spec_mod.REDUCED_PRECISION_REDUCTION,
    "optimizer": spec_mod.OPTIMIZERS,
    "device": spec_mod.DEVICES,
    "lr_schedule": spec_mod.LR_SCHEDULES,
    "augment": spec_mod.AUGMENTATIONS,
    "channels_last": spec_mod.CHANNELS_LAST,
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train one model and report accuracy and kink hits",
        description="Train one model with a chosen ReLU'(0) and report per-epoch validation "
        "accuracy, test accuracy and how often backward passes hit a kink.",
    )
    add_spec_arguments(parser)
    parser.add_argument("--data-dir", help="folder with the dataset files in torchvision's "
                        "layout (or HPO_DATA_DIR)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run)


def add_spec_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """Add one flag per :class:`TrainSpec` field (``relu_prime_zero`` -> ``--relu-prime-zero``).

    Commands that run the engine (train, diverge, probe) share these flags.
    """
    hints = typing.get_type_hints(TrainSpec)
    for field in dataclasses.fields(TrainSpec):
        if field.name in exclude:
            continue
        base = _base_type(hints[field.name])
        kwargs: dict[str, Any] = {"default": field.default, "help": _help(field)}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif field.name in _CHOICES:
            kwargs.update(type=base, choices=_CHOICES[field.name])
        else:
            kwargs.update(type=base, metavar=field.name.upper())
        parser.add_argument("--" + field.name.replace("_", "-"), dest=field.name, **kwargs)


def spec_from_args(args: argparse.Namespace) -> TrainSpec:
    return TrainSpec(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSpec)})


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
    if args.json:
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_human(payload)
    return 0


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


def _base_type(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _help(field: dataclasses.Field) -> str:
    text = _HELP.get(field.name, field.name)
    if field.default is not None and not isinstance(field.default, bool):
        text += f" (default: {field.default})"
    return text
