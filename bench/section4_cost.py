"""What the paper's Section 4 protocols cost: FLOPs per epoch, GPU-hours per cell, a CPU step.

For ResNet18-CIFAR and VGG11 (with and without batch norm), ``FlopCounterMode`` counts one
training step (forward + backward, batch 128) and one evaluation forward; an epoch is the
protocol's training images (the official training set minus our 5,000 validation images) plus
the 5,000 validation images, a run adds the test set once. GPU-hours come from an ASSUMED
sustained throughput (``--tflops``, default 15 TFLOP/s: float32, TF32 off, about a quarter of
an H100's float32 peak), not from a GPU measurement. The CPU figure is a measured training step
on this machine. Run: ``python bench/section4_cost.py [--tflops 15] [--no-cpu]``.
"""

from __future__ import annotations

import argparse
import time

import _timing  # noqa: F401  (puts the repository on sys.path)
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from hpo.config.reproduce.section4 import BEST_LR, FULL, PROTOCOLS
from hpo.engine.data.registry import dataset_info
from hpo.engine.models.build import build_model
from hpo.engine.spec import TrainSpec

BATCH = 128
MODELS = {"resnet18": "resnet18_cifar", "vgg11": "vgg11"}


def _flops(model: torch.nn.Module, train: bool) -> float:
    """FLOPs per image of one training step (forward + backward) or one eval forward."""
    x = torch.randn(BATCH, 3, 32, 32)
    y = torch.randint(0, 10, (BATCH,))
    model.train(train)
    with FlopCounterMode(display=False) as counter:
        if train:
            F.cross_entropy(model(x), y).backward()
        else:
            with torch.no_grad():
                model(x)
    return counter.get_total_flops() / BATCH


def _cpu_step_s(model: torch.nn.Module) -> float:
    """Seconds of one SGD training step at batch 128 on this CPU (the faster of 2, after 1)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
    model.train()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflops", type=float, default=15.0,
                        help="ASSUMED sustained GPU throughput in TFLOP/s (default 15)")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU step timing")
    args = parser.parse_args()
    val = FULL["val_size"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; GPU throughput "
          f"ASSUMED {args.tflops:g} TFLOP/s (not measured)")
    print("| protocol | bn | train GFLOP/img | epoch PFLOP | runs x epochs | GPU-h/cell "
          "| GPU-h/protocol | CPU s/step | CPU h/cell |")
    print("|---|---|---|---|---|---|---|---|---|")
    for stem, proto in PROTOCOLS.items():
        info = dataset_info(proto.dataset)
        for bn in (False, True):
            spec = TrainSpec(model=MODELS[proto.model], dataset=proto.dataset, batch_norm=bn)
            torch.manual_seed(0)
            model = build_model(spec, num_classes=10).model
            train_f, eval_f = _flops(model, True), _flops(model, False)
            n_train = info.train_size - val
            epoch = n_train * train_f + val * eval_f
            run = proto.epochs * epoch + info.test_size * eval_f
            cell = proto.runs * run
            gpu_h = cell / (args.tflops * 1e12) / 3600
            alphas = len(BEST_LR[(stem, bn)])
            steps = proto.runs * proto.epochs * -(-n_train // BATCH)
            step_s = None if args.no_cpu else _cpu_step_s(model)
            cpu = ("n/a | n/a" if step_s is None
                   else f"{step_s:.2f} | {steps * step_s / 3600:,.0f}")
            print(f"| {stem} | {'on' if bn else 'off'} | {train_f / 1e9:.2f} | "
                  f"{epoch / 1e15:.2f} | {proto.runs} x {proto.epochs} | {gpu_h:.1f} | "
                  f"{gpu_h * alphas:.0f} ({alphas} alphas) | {cpu} |")


if __name__ == "__main__":
    main()
