"""params_sha256 of the reference runs: the fingerprint that engine changes must not move.

Each run is a short, seeded training on real MNIST (``HPO_DATA_DIR``); the same tree and
platform must print the same hashes, and a change that claims "no behaviour change" must
print the same hashes before and after. Usage::

    HPO_DATA_DIR=../shared/datasets python bench/reference_runs.py [--json FILE]

Runs: fc 3x256 with batch norm (which puts bfloat16 and float16 pre-activations exactly on
0, so the kinked path is exercised) at float32, bfloat16, float16 and float64 with
ReLU'(0)=1, two of them also at ReLU'(0)=0 (PyTorch's value), and MobileNetV3-small at
bfloat16 with ReLU'(0)=1. float16 matrix products are slow on some CPUs: its run is kept
small.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from hpo.engine.spec import TrainSpec
from hpo.engine.train import train

FC = dict(model="fc", depth=3, width=256, batch_norm=True)
RUNS = {
    "fc3x256_float32_a1": dict(**FC, precision="float32",
                               relu_prime_zero=1.0, train_subset=4000),
    "fc3x256_float32_a0": dict(**FC, precision="float32",
                               relu_prime_zero=0.0, train_subset=4000),
    "fc3x256_bfloat16_a1": dict(**FC, precision="bfloat16",
                                relu_prime_zero=1.0, train_subset=4000),
    "fc3x256_bfloat16_a0": dict(**FC, precision="bfloat16",
                                relu_prime_zero=0.0, train_subset=4000),
    "fc3x256_float16_a1": dict(**FC, precision="float16",
                               relu_prime_zero=1.0, train_subset=1000),
    "fc3x256_float64_a1": dict(**FC, precision="float64",
                               relu_prime_zero=1.0, train_subset=2000),
    "mobilenet_v3_small_bfloat16_a1": dict(model="mobilenet_v3_small", precision="bfloat16",
                                           relu_prime_zero=1.0, train_subset=512,
                                           batch_size=64, image_size=32),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the hashes to this file")
    parser.add_argument("--only", nargs="*", help="run only these names")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = {}
    for name, kwargs in RUNS.items():
        if args.only and name not in args.only:
            continue
        spec = TrainSpec(epochs=1, val_size=1000, seed=0, device="cpu", **kwargs)
        started = time.perf_counter()
        result = train(spec)
        out[name] = {"params_sha256": result.params_sha256, "kink_hits": result.kink_hits,
                     "seconds": round(time.perf_counter() - started, 2)}
        print(f"{name:34s} {result.params_sha256}  kink_hits={result.kink_hits}  "
              f"{out[name]['seconds']} s", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
