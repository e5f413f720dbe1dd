"""Cost of our ReLU with ReLU'(0) = 1 against ``nn.ReLU``: time alone, time per step, memory.

Both sides are the same model built from the same seed (so the same weights), differing only
in the activation modules: ours is what the engine builds (``hpo.engine.models.build.build_model``
with ``relu_prime_zero=1``), the stock copy has each of them swapped back to ``nn.ReLU`` with
the same ``inplace``. Inputs are real MNIST images prepared by the engine (batch 128; 1
channel for the fc net, 3 channels 28x28 for MobileNetV3-small).

(a) **Activation alone**, forward + backward, on the real pre-activations of the fc nets
    (hidden 128x256 from fc 3x256, 128x1024 from fc 1x1024) and of every distinct
    ReLU input shape of MobileNetV3-small, captured with forward pre-hooks. Per call: a
    fresh non-leaf copy of the input is made outside the timed region, then
    ``out = act(h)`` and ``torch.autograd.grad(out, leaf, g)`` are timed (the gradient
    reaches the leaf through one identity clone node, the same on both sides). Ours does
    more than ``nn.ReLU``: the search for inputs exactly on the kink (PyTorch ops,
    ``hpo/engine/models/kinkscan.py``: a cast to bool and a byte-wise ``min``, two short
    kernels and a Python round trip) that must happen before an in-place ReLU overwrites
    them; when none is found PyTorch's own op and backward run. On the smallest shapes
    (1K-10K values) that fixed cost is most of the difference.
(b) **Training step** (forward, cross-entropy, ``zero_grad``, backward, Adam step) with the
    engine's own loss function and optimizer settings, on fc 3x256 and MobileNetV3-small.
(c) **Peak memory of a training step**, same models and step. CPU has no
    ``torch.cuda.max_memory_allocated``, so the allocator itself is asked:
    ``torch.profiler`` with ``profile_memory=True`` logs every allocation and every free
    made through PyTorch's CPU allocator (size, negative for a free, and timestamp),
    whatever holds the tensor: ``save_for_backward``, attributes kept on an autograd
    ``ctx`` (our sparse kink indices), temporaries inside a backward, the optimizer. Two
    steps run under the profiler and the second, marked with ``record_function``, is
    measured (a free is logged with its size only when the profiler saw the allocation, and
    everything the second step frees was allocated under it). The running sum of the
    events, in time order, is the live memory; "peak above start" is its maximum during the
    step minus its value when the step began; "total" adds what was live at that point
    (parameters, the last step's gradients, Adam state and the batch, counted from the
    tensors themselves). Memory outside PyTorch's allocator (Python objects, the autograd
    graph's C++ nodes) is not seen: a few hundred bytes per node, and the same nodes on both
    sides when no input is on a kink. Every run also checks that the measure sees a
    tensor kept only on an autograd ``ctx`` (``self_check``). PyTorch warns once that
    blocks allocated before profiling started are not tracked: that is why the first
    profiled step is not the measured one.

Targets (issue 10): (b) at most 1.05x and (c) at most 1.1x for both models; (a) is shown
for information (a few microseconds of search per call, most of a ReLU on the smallest
shapes, a small part of a step).

Timings alternate between stock and ours block by block after a warm-up and report the
median over blocks. The run reports how many inputs were exactly on a kink, since a step
with kink hits takes the slower path that keeps their positions. On a machine shared with
other jobs, ``--threads 1 --cpu-clock`` times the main thread's CPU time instead of wall
time (steadier; says nothing about two threads).

Usage::

    HPO_DATA_DIR=/work/shared/datasets python bench/activation_overhead.py            # final
    HPO_DATA_DIR=/work/shared/datasets python bench/activation_overhead.py --quick    # sanity
    HPO_DATA_DIR=/work/shared/datasets python bench/activation_overhead.py --quick \
        --threads 1 --cpu-clock                                              # busy machine
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import _timing  # puts the repository on sys.path
import torch
from _timing import Check, clock, machine_header, median, print_checks, print_table
from epoch_time import stock_copy
from torch import Tensor, nn
from torch.autograd import DeviceType
from torch.autograd.profiler_util import MEMORY_EVENT_NAME
from torch.profiler import ProfilerActivity, profile, record_function

from hpo.engine.data import idx
from hpo.engine.data import tensors as data_mod
from hpo.engine.models.activations import ReLU, kinked_modules
from hpo.engine.models.build import build_model
from hpo.engine.numerics.precision import resolve_precision
from hpo.engine.result import TrainResult
from hpo.engine.spec import TrainSpec
from hpo.engine.step import batch_loss, make_optimizer, shape_for_model

# Issue 10's targets are the step's time and memory, what a trial sees. The activation
# alone is information since the compiled scan is gone (it was <= 1.2x with it): on its
# small shapes the search's fixed cost of a few microseconds is most of a ReLU call.
ALONE_TARGET, STEP_TARGET, MEMORY_TARGET = None, 1.05, 1.1
_MEASURED = "hpo_bench_measured_step"
_SELF_CHECK_BYTES = 2**20
PRIME = 1.0  # the non-zero ReLU'(0) of "ours"

MODELS = {
    "fc 3x256": TrainSpec(model="fc", depth=3, width=256, relu_prime_zero=PRIME),
    "mobilenet_v3_small": TrainSpec(model="mobilenet_v3_small", relu_prime_zero=PRIME),
}
# Only used to capture a real 128x1024 hidden pre-activation.
FC_1024 = TrainSpec(model="fc", depth=1, width=1024, relu_prime_zero=PRIME)


@dataclass
class Pair:
    """The same model twice: with our activations and with nn.ReLU."""

    name: str
    spec: TrainSpec
    ours: nn.Module
    stock: nn.Module
    x: Tensor
    y: Tensor


def make_pair(name: str, spec: TrainSpec, data_dir: Path, batch: int) -> Pair:
    torch.manual_seed(spec.seed)
    ours = build_model(spec).model
    stock = stock_copy(ours)
    raw = idx.load_raw(spec.dataset, data_dir)
    x = data_mod.prepare_images(
        raw.train_images[:batch], dataset=spec.dataset, normalize=True, dtype=torch.float32
    )
    # contiguous(): the 3-channel view is an expand, materialise it once outside the timing.
    x = shape_for_model(spec, x).contiguous()
    return Pair(name, spec, ours, stock, x, raw.train_labels[:batch])


# -- (a) the activation alone ---------------------------------------------------------------
def capture_inputs(pair: Pair) -> list[tuple[str, Tensor, bool]]:
    """(module name, real input, inplace) for the first module of each distinct shape."""
    seen: dict[tuple[int, ...], tuple[str, Tensor, bool]] = {}
    hooks = []
    for name, module in kinked_modules(pair.ours):
        def hook(mod: nn.Module, args: tuple[Tensor], name: str = name) -> None:
            shape = tuple(args[0].shape)
            if shape not in seen:
                seen[shape] = (name, args[0].detach().clone(), mod.inplace)

        hooks.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        pair.ours.train()(pair.x)
    for h in hooks:
        h.remove()
    return list(seen.values())


def time_alone(act: nn.Module, x: Tensor, calls: int) -> float:
    """Seconds per forward + backward of ``act`` alone (setup of each call not timed)."""
    leaf = x.clone().requires_grad_(True)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    total = 0.0
    for _ in range(calls):
        h = leaf.clone()  # fresh non-leaf input: in-place activations may modify it
        start = clock()
        out = act(h)
        torch.autograd.grad(out, leaf, g)
        total += clock() - start
    return total / calls


def alternate(variants: dict[str, Callable[[], float]], blocks: int) -> dict[str, float]:
    """Run the variants block by block, alternating (order flips every block); medians."""
    names = list(variants)
    for name in names:  # warm-up, not counted
        variants[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for b in range(blocks):
        for name in names if b % 2 == 0 else names[::-1]:
            times[name].append(variants[name]())
    return {n: median(v) for n, v in times.items()}


# -- (b) one training step --------------------------------------------------------------
def make_step(pair: Pair, model: nn.Module) -> Callable[[], None]:
    precision = resolve_precision(pair.spec.precision)
    optimizer = make_optimizer(pair.spec, model, precision, TrainResult())
    model.train()

    def step() -> None:  # the engine's step (hpo.engine.train._fit), minus bookkeeping
        loss = batch_loss(model, pair.x, pair.y, precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step.optimizer = optimizer  # type: ignore[attr-defined]
    return step


def time_steps(step: Callable[[], None], steps: int) -> float:
    start = clock()
    for _ in range(steps):
        step()
    return (clock() - start) / steps


# -- (c) peak memory of one step -----------------------------------------------------------
def live_at_start(model: nn.Module, optimizer: torch.optim.Optimizer, pair: Pair) -> int:
    """Bytes of what a step starts with: parameters, gradients, Adam state, the batch."""
    tensors: dict[int, Tensor] = {}
    for p in model.parameters():
        tensors[id(p)] = p
        if p.grad is not None:
            tensors[id(p.grad)] = p.grad
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, Tensor):
                tensors[id(value)] = value
    tensors[id(pair.x)], tensors[id(pair.y)] = pair.x, pair.y
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in tensors.values()}
    return sum(storages.values())


def step_peak(step: Callable[[], None]) -> int:
    """Peak bytes allocated above the start of one step, from the allocator's event log.

    Two steps run under the profiler and the second is measured: a free is only logged
    with its size when the profiler saw the allocation, and the blocks the second step frees
    (the first step's gradients, its own activations) were all allocated under it.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
        with record_function(_MEASURED):
            step()
    events = prof.profiler.kineto_results.events()
    window = next(e for e in events if e.name() == _MEASURED)
    start, end = window.start_ns(), window.end_ns()
    memory = sorted(
        (e.start_ns(), e.nbytes())
        for e in events
        if e.name() == MEMORY_EVENT_NAME and e.device_type() == DeviceType.CPU
    )
    live = at_start = peak = 0
    for t, nbytes in memory:
        if t > end:
            break
        live += nbytes
        if t < start:
            at_start = peak = live
        else:
            peak = max(peak, live)
    return peak - at_start


class _KeepOnCtx(torch.autograd.Function):
    """Identity that keeps an extra tensor on its ctx, not through save_for_backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.kept = torch.ones(_SELF_CHECK_BYTES, dtype=torch.uint8)
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad


def self_check() -> Check:
    """Does :func:`step_peak` see a tensor that only an autograd ctx keeps (as our sparse
    kink indices are kept)? The ratio is the extra peak over the kept tensor's size."""
    layer = nn.Linear(64, 64)
    x = torch.randn(128, 64)

    def plain() -> None:
        layer(x).sum().backward()

    def keeping() -> None:
        _KeepOnCtx.apply(layer(x)).sum().backward()

    extra = step_peak(keeping) - step_peak(plain)
    return Check("(c) self-check: extra peak / 1 MiB kept on a ctx", extra / _SELF_CHECK_BYTES,
                 1.0, at_least=True, note="the memory measure sees what a ctx keeps")


def kink_hits(model: nn.Module) -> int:
    hits = sum(sum(m.kink_hits()) for _, m in kinked_modules(model))
    for _, m in kinked_modules(model):
        m.reset_kink_hits()
    return hits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _timing.add_common_arguments(parser)
    args = parser.parse_args(argv)
    _timing.setup(parser, args)
    data_dir = Path(args.data_dir)
    blocks = 4 if args.quick else 10
    alone_calls = 50 if args.quick else 300
    fc_steps, cnn_steps = (5, 1) if args.quick else (30, 3)

    print(machine_header())
    print(f"batch 128, float32, ours = ReLU'(0)={PRIME:g}; {blocks} alternating blocks "
          "after a warm-up, median\n")
    pairs = {name: make_pair(name, spec, data_dir, 128) for name, spec in MODELS.items()}
    checks: list[Check] = []

    # (a)
    inputs = [("fc 3x256",) + capture_inputs(pairs["fc 3x256"])[0]]
    inputs += [("fc 1x1024",) + capture_inputs(make_pair("fc 1x1024", FC_1024, data_dir, 128))[0]]
    inputs += [("mobilenet_v3_small",) + c for c in capture_inputs(pairs["mobilenet_v3_small"])]
    rows = []
    for model_name, layer, x, inplace in inputs:
        stock, ours = nn.ReLU(inplace=inplace), ReLU(PRIME, inplace=inplace)
        calls = max(5, min(alone_calls, int(alone_calls * 131072 / x.numel())))
        t = alternate({"stock": partial(time_alone, stock, x, calls),
                       "ours": partial(time_alone, ours, x, calls)}, blocks)
        on_kink = int((x == 0).sum())
        rows.append([model_name, layer, "x".join(map(str, x.shape)), str(inplace),
                     str(on_kink), f"{t['stock'] * 1e6:.1f}", f"{t['ours'] * 1e6:.1f}"])
        checks.append(Check(f"(a) alone {'x'.join(map(str, x.shape))} ({model_name})",
                            t["ours"] / t["stock"], ALONE_TARGET,
                            note="fixed cost of the search"))
    print("(a) activation alone, forward + backward")
    print_table(["model", "layer", "shape", "inplace", "on kink", "nn.ReLU us", "ours us"], rows)
    print()

    # (b) and (c)
    rows = []
    for name, pair in pairs.items():
        steps = fc_steps if name.startswith("fc") else cnn_steps
        stock_step, ours_step = make_step(pair, pair.stock), make_step(pair, pair.ours)
        kink_hits(pair.ours)
        t = alternate({"stock": partial(time_steps, stock_step, steps),
                       "ours": partial(time_steps, ours_step, steps)}, blocks)
        hits = kink_hits(pair.ours)
        peaks = {}
        for label, model, step in (("stock", pair.stock, stock_step),
                                   ("ours", pair.ours, ours_step)):
            step()  # the state a step normally starts from: last step's gradients exist
            base = live_at_start(model, step.optimizer, pair)
            transient = step_peak(step)
            peaks[label] = (transient, base + transient)
        rows.append([name, f"{t['stock'] * 1e3:.2f}", f"{t['ours'] * 1e3:.2f}", str(hits),
                     f"{peaks['stock'][0] / 2**20:.2f}", f"{peaks['ours'][0] / 2**20:.2f}",
                     f"{peaks['stock'][1] / 2**20:.2f}", f"{peaks['ours'][1] / 2**20:.2f}"])
        checks.append(Check(f"(b) training step, {name}", t["ours"] / t["stock"], STEP_TARGET))
        checks.append(Check(f"(c) step peak above start, {name}",
                            peaks["ours"][0] / peaks["stock"][0], MEMORY_TARGET))
        checks.append(Check(f"(c) step peak total, {name}",
                            peaks["ours"][1] / peaks["stock"][1], MEMORY_TARGET))
    checks.append(self_check())
    print("(b) training step time, (c) peak memory of a step")
    print_table(["model", "nn.ReLU ms", "ours ms", "kink hits (timed steps)",
                 "peak+ MiB stock", "peak+ MiB ours", "total MiB stock", "total MiB ours"],
                rows)
    print()
    failed = print_checks(checks)
    print(f"\n{failed} target(s) missed" if failed else "\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
