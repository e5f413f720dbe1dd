"""CPU and wall time of one EPFL volume cell with their protocol, for the full-run estimate.

Runs :func:`hpo.engine.probe.bifurcation.run_probe` exactly as an ``hpo reproduce
epfl-volume`` trial does (accumulate, in order, loss in the model's dtype, first Linear's
weight) on all 60,000 MNIST images, per precision, and prints bifurcated inits, CPU seconds
(all threads) and wall seconds. Usage::

    HPO_DATA_DIR=../shared/datasets python bench/epfl_volume_cost.py --batch-size 256 --inits 10
"""

from __future__ import annotations

import argparse
import time

import torch

from hpo.config.reproduce.epfl_volume import FIXED
from hpo.engine.probe.bifurcation import run_probe
from hpo.engine.spec import TrainSpec

__all__ = ["main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--inits", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["float32", "float64", "float16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for precision in args.precisions:
        spec = TrainSpec.from_dict({**FIXED, "device": "cpu", "depth": args.depth,
                                    "width": args.width, "batch_size": args.batch_size,
                                    "precision": precision})
        cpu, wall = time.process_time(), time.perf_counter()
        r = run_probe(spec, inits=args.inits, compare="first_weight", train_set="all",
                      accumulate=True, shuffle=False, loss_dtype="param")
        print(f"L{args.depth}-n{args.width}-b{args.batch_size} {precision}: "
              f"{r.bifurcated}/{args.inits} bifurcated, "
              f"cpu {time.process_time() - cpu:.1f} s, wall {time.perf_counter() - wall:.1f} s",
              flush=True)


if __name__ == "__main__":
    main()
