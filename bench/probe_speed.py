"""Speed of the bifurcation probe against this CPU's plain matrix product.

Times a one-epoch probe (default: 100 inits, the 3x256 fully connected net, full MNIST
training split, float32, batch 256, ReLU'(0) = 0 vs 1, first-layer gradients) and sets
its FLOP rate (matmul FLOPs actually executed: the forward pass of every surviving init on
every mini-batch, plus the forward and backward passes re-run where a kink was hit) against
the rate ``torch.matmul`` reaches on the same shapes, (batch x in) @ (in x out) for each
layer, in the same dtype, with the same threads, measured in the same run.

    HPO_DATA_DIR=/work/shared/datasets python bench/probe_speed.py           # 100 inits
    HPO_DATA_DIR=/work/shared/datasets python bench/probe_speed.py --quick   # 10 inits
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpo.engine.data.idx import load_raw  # noqa: E402
from hpo.engine.numerics.precision import resolve_precision  # noqa: E402
from hpo.engine.probe.bifurcation import run_probe  # noqa: E402
from hpo.engine.spec import TrainSpec  # noqa: E402


def matmul_rate(shapes: list[tuple[int, int, int]], weights: list[float], dtype: torch.dtype,
                rounds: int = 5, seconds: float = 0.1) -> tuple[float, list[float]]:
    """GFLOP/s of ``torch.matmul`` per (m, k, n) shape (median of ``rounds`` short runs, the
    shapes taking turns), and the rate for a FLOP mix of them (weights)."""
    gen = torch.Generator().manual_seed(0)
    pairs = [
        (torch.randn(m, k, generator=gen).to(dtype), torch.randn(k, n, generator=gen).to(dtype))
        for m, k, n in shapes
    ]
    samples: list[list[float]] = [[] for _ in shapes]
    for _ in range(rounds):
        for (m, k, n), (a, b), got in zip(shapes, pairs, samples):
            torch.matmul(a, b)
            reps, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                torch.matmul(a, b)
                reps += 1
            got.append(2 * m * k * n * reps / elapsed / 1e9)
    rates = [statistics.median(got) for got in samples]
    # The rate of the mix is its FLOPs over the time the mix takes at those rates.
    mixed = sum(weights) / sum(w / r for w, r in zip(weights, rates))
    return mixed, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 inits instead of 100")
    parser.add_argument("--inits", type=int, help="number of inits (overrides --quick)")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--data-dir", help="dataset folder (default: HPO_DATA_DIR)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    inits = args.inits or (10 if args.quick else 100)
    spec = TrainSpec(model="fc", depth=3, width=256, dataset="mnist",
                     precision=args.precision, batch_size=256)
    load_raw(spec.dataset, args.data_dir)  # reading the IDX files is not the probe's time
    dims = [784] + [spec.width] * spec.depth
    shapes = [(spec.batch_size, i, o) for i, o in zip(dims, dims[1:])]
    mix = [float(k * n) for _, k, n in shapes]  # the hidden layers' share of the FLOPs
    dtype = resolve_precision(spec.precision).param_dtype
    # The CPU may be shared: measure the matmul rate before and after the probe.
    load_before = os.getloadavg()[0]
    before, rates = matmul_rate(shapes, mix, dtype)
    result = run_probe(spec, inits=inits, alphas=(0.0, 1.0), compare="first",
                       data_dir=args.data_dir)
    after, rates_after = matmul_rate(shapes, mix, dtype)
    ref_rate = (before + after) / 2
    rates = [(a + b) / 2 for a, b in zip(rates, rates_after)]

    flops = result.forward_flops + result.backward_flops
    loop_s = result.wall_time_s - result.init_time_s

    print(f"probe: {inits} inits x {result.batches_per_epoch} mini-batches of "
          f"{spec.batch_size} ({result.train_samples} samples), fc {spec.depth}x{spec.width}, "
          f"{spec.precision}, {result.method}, {result.threads} thread(s), {result.device}")
    print(f"  bifurcated {result.bifurcated}/{inits} (fraction {result.bifurcated_fraction:.3f}),"
          f" hazard per mini-batch {result.hazard_per_batch:.5f}, median samples to "
          f"bifurcation {result.median_samples_to_bifurcation}")
    print(f"  mini-batches examined {result.batches_examined}, with a kink hit "
          f"{result.kinked_batches}")
    print(f"  wall {result.wall_time_s:.2f} s = building inits {result.init_time_s:.2f} s "
          f"+ probing {loop_s:.2f} s")
    print(f"  matmul FLOPs executed: forward {result.forward_flops / 1e12:.3f} T, backward "
          f"{result.backward_flops / 1e12:.3f} T")
    probe_rate = flops / loop_s / 1e9
    print(f"  achieved {probe_rate:.1f} GFLOP/s while probing "
          f"({flops / result.wall_time_s / 1e9:.1f} GFLOP/s over the whole wall time)")
    per_shape = ", ".join(f"{m}x{k}x{n}: {r:.1f}" for (m, k, n), r in zip(shapes, rates))
    print(f"  torch.matmul on the same shapes: {ref_rate:.1f} GFLOP/s for the probe's FLOP "
          f"mix ({per_shape}; {before:.1f} before, {after:.1f} after the probe)")
    print(f"  1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on "
          f"{os.cpu_count()} CPUs")
    print(f"  probe / matmul = {probe_rate / ref_rate:.2f}; at matmul speed the probing would "
          f"take {flops / ref_rate / 1e9:.2f} s")


if __name__ == "__main__":
    main()
