"""The engine's CUDA paths, checked on a machine with an NVIDIA GPU (CI has none).

    HPO_DATA_DIR=/path/to/datasets python bench/cuda_check.py [--quick] [--device cpu]

``--device cpu`` is a dry run of the script itself (no GPU figure): the same checks on the CPU,
a 512-image subset (learning judged against chance, not 50 %), no float16/tf32 runs and no
synchronisation checks.

What it checks, each line PASS/FAIL with the measured figure:

* activations on the GPU, in float16, bfloat16, float32 and float64: with PyTorch's
  derivatives, forward and backward bitwise equal to ``torch.relu`` / ``F.relu6`` /
  ``F.leaky_relu``; with ReLU'(0) = 1, the gradient at exact zeros is the incoming one; the
  kink counters agree with the CPU's on the same values;
* no device-to-host synchronisation in a forward + backward + optimizer step of our
  activations (``torch.cuda.set_sync_debug_mode("error")``);
* ``train()`` on CUDA for the fc net in every precision and for MobileNetV3-small on
  3-channel MNIST (deterministic-algorithm mode on): runs, learns, records kink hits,
  counts the synchronisations per step, and reproduces bitwise when run twice;
* float16 against float32 speed (training samples per second) on the GPU;
* honest precision: a float32 run records TF32 off and a tf32 run TF32 on (in its platform
  record, read inside the run), the two give different weights on a conv net, and every
  numerics flag is back at its value before the runs.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import _timing  # noqa: F401  (puts the repository on sys.path)
import torch
import torch.nn.functional as F

from hpo.engine.models.activations import LeakyReLU, ReLU, ReLU6
from hpo.engine.numerics.flags import read_flags
from hpo.engine.spec import TrainSpec
from hpo.engine.train import train

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
DEVICE = "cuda"  # --device cpu: a dry run of the script on the CPU
results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, figure: str = "") -> None:
    results.append((name, ok, figure))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {figure}", flush=True)


def _grid(dtype: torch.dtype, device: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(-16, 16, (64, 257), generator=gen).to(torch.float64) / 2  # 0s and 6s
    return x.to(dtype).to(device)


def _fwd_bwd(act, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.clone().requires_grad_()
    out = act(leaf * 1)
    (grad,) = torch.autograd.grad(out, leaf, g)
    return out.detach(), grad


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def activations() -> None:
    stock = {
        "relu": (lambda: ReLU(0.0), torch.relu),
        "relu6": (lambda: ReLU6(0.0, 0.0), F.relu6),
        "leaky_relu": (lambda: LeakyReLU(0.01), lambda t: F.leaky_relu(t, 0.01)),
    }
    for dtype in DTYPES:
        x = _grid(dtype, DEVICE)
        g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype).to(DEVICE)
        for name, (ours, theirs) in stock.items():
            a, ga = _fwd_bwd(ours(), x, g)
            b, gb = _fwd_bwd(theirs, x, g)
            check(f"{DEVICE} {dtype} {name} at PyTorch's derivative is bitwise PyTorch's",
                  _same_bits(a, b) and _same_bits(ga, gb))
        act = ReLU(1.0)
        _, grad = _fwd_bwd(act, x, g)
        _, ref = _fwd_bwd(torch.relu, x, g)
        zero = x == 0
        ok = torch.equal(grad[zero], g[zero]) and torch.equal(grad[~zero], ref[~zero])
        cpu = ReLU6(1.0, 0.5)
        _fwd_bwd(cpu, x.cpu(), g.cpu())
        dev = ReLU6(1.0, 0.5)
        _fwd_bwd(dev, x, g)
        check(f"{DEVICE} {dtype} ReLU'(0)=1 applied at exact zeros; kink counts equal CPU's",
              ok and cpu.kink_hits() == dev.kink_hits() and sum(dev.kink_hits()) > 0,
              f"hits {dev.kink_hits()}")


def no_sync_in_a_step() -> None:
    if DEVICE != "cuda":
        print("SKIP  no device-to-host sync check (CUDA only)", flush=True)
        return
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.BatchNorm1d(256), ReLU6(1.0, 0.5),
        torch.nn.Linear(256, 256), ReLU(1.0), torch.nn.Linear(256, 10),
    ).cuda().to(torch.bfloat16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(128, 64, device="cuda", dtype=torch.bfloat16)
    y = torch.randint(0, 10, (128,), device="cuda")
    error = ""
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    except RuntimeError as exc:
        error = str(exc).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    hits = sum(sum(m.kink_hits()) for m in model if hasattr(m, "kink_hits"))
    check("no device-to-host sync in forward+backward+Adam with our activations",
          not error, error or f"kink hits after 3 steps: {hits}")


def _train_counting_syncs(spec: TrainSpec):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if DEVICE == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            started = time.perf_counter()
            result = train(spec)
            elapsed = time.perf_counter() - started
        finally:
            if DEVICE == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    return result, elapsed, syncs


def training(quick: bool) -> None:
    subset = 512 if DEVICE == "cpu" else 10000 if quick else 50000
    speed: dict[tuple[str, str], float] = {}
    fc_precisions = ("float32", "float16", "bfloat16", "float64", "amp_float16")
    mobile_precisions = ("float32", "tf32", "float16", "bfloat16")
    if DEVICE == "cpu":  # float16 is ~50x slower than float32 on CPUs; tf32 is CUDA only
        fc_precisions, mobile_precisions = ("float32", "bfloat16", "float64"), ("float32",)
    runs = [("fc", p, dict(model="fc", depth=3, width=256, batch_norm=True))
            for p in fc_precisions]
    runs += [("mobilenet_v3_small", p, dict(model="mobilenet_v3_small"))
             for p in mobile_precisions]
    hashes: dict[tuple[str, str], str] = {}
    flags_before = read_flags()
    for model, precision, extra in runs:
        spec = TrainSpec(**extra, precision=precision, relu_prime_zero=1.0, device=DEVICE,
                         train_subset=subset, val_size=512 if DEVICE == "cpu" else 5000,
                         epochs=1, seed=0)
        try:
            result, elapsed, syncs = _train_counting_syncs(spec)
        except Exception as exc:  # noqa: BLE001 - report and go on
            check(f"train {model} {precision} on {DEVICE}", False,
                  f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        steps = -(-subset // spec.batch_size)
        speed[(model, precision)] = result.samples_per_second
        hashes[(model, precision)] = result.params_sha256
        flags = result.platform["flags"]
        tf32 = (flags.get("cuda_matmul_allow_tf32"), flags.get("cudnn_allow_tf32"))
        if DEVICE == "cuda":
            check(f"train {model} {precision}: TF32 {'on' if precision == 'tf32' else 'off'} "
                  "in its platform record", tf32 == ((True, True) if precision == "tf32"
                                                     else (False, False)),
                  f"matmul, cudnn: {tf32}; {result.platform.get('cuda_device')} sm "
                  f"{result.platform.get('cuda_capability')}")
        # 4 steps of the CPU dry run only get above chance (10 classes), not to 50 %.
        learned = result.diverged or result.val_accuracy[-1] > (0.15 if DEVICE == "cpu" else 0.5)
        check(
            f"train {model} {precision} on {DEVICE}",
            learned and result.configured_activations > 0,
            f"val {result.val_accuracy} test {result.test_accuracy} kinks {result.kink_hits} "
            f"diverged {result.diverged} acts {result.configured_activations} "
            f"{result.samples_per_second:.0f} samples/s, call {elapsed:.1f} s, "
            f"{syncs} syncs in the call ({steps} training steps; model transfer, batch-norm "
            "recalibration, evaluation and hashing included)",
        )
        if precision in ("float32", "bfloat16"):
            again = train(spec)
            check(f"train {model} {precision} on {DEVICE} reproduces bitwise",
                  again.params_sha256 == result.params_sha256,
                  f"{result.params_sha256[:12]} vs {again.params_sha256[:12]}")
    check("every numerics flag is back after the runs", read_flags() == flags_before)
    pair = [hashes.get(("mobilenet_v3_small", p)) for p in ("float32", "tf32")]
    if all(pair):
        check("mobilenet_v3_small: float32 and tf32 give different weights (TF32 really off "
              "under float32)", pair[0] != pair[1], f"{pair[0][:12]} vs {pair[1][:12]}")
    for model in ("fc", "mobilenet_v3_small"):
        if (model, "float16") in speed and (model, "float32") in speed:
            ratio = speed[(model, "float16")] / speed[(model, "float32")]
            check(f"{model}: float16 / float32 training throughput on the GPU (information)",
                  True, f"{ratio:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 training images")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a dry run of the script (no GPU figure)")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: this script checks the GPU paths and needs one (or "
              "--device cpu for a dry run of the script)")
        return 2
    where = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU dry run, no GPU figure"
    print(f"torch {torch.__version__}, {where}", flush=True)
    activations()
    no_sync_in_a_step()
    training(args.quick)
    failed = [r for r in results if not r[1]]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
