"""The probe's fast path: many fully connected inits at once with batched matmuls.

The surviving inits' weights are stacked and every linear layer is one ``torch.baddbmm``;
a forward pass without gradients finds the inits with an activation input exactly on 0, and
only those are re-run with autograd once per alpha, through the engine's activation modules,
and their gradients compared bitwise. See docs/design.md#the-probes-batched-fast-path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hpo.engine.data import tensors as data_mod
from hpo.engine.models.activations import create_activation
from hpo.engine.numerics.precision import Precision
from hpo.engine.spec import TrainSpec

__all__ = ["run", "supports"]

log = logging.getLogger(__name__)

# Bytes of stacked weights and activations one group of inits may use; larger K is probed
# in groups of inits, one after the other.
_MEMORY_BUDGET = 1 << 30
# Inits per forward chunk: about 16 keeps one layer's activations (16 x batch x width) in
# cache; measured 1.3x faster than all 100 inits at once for the 3x256 net, batch 256.
_CHUNK = 16

_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}

Layers = list[tuple[Tensor, Tensor]]  # per linear layer: W (S, out, in), b (S, out)


def supports(spec: TrainSpec, precision: Precision) -> bool:
    """Fully connected, no batch norm (per-batch statistics), no autocast."""
    return spec.model == "fc" and not spec.batch_norm and precision.autocast_dtype is None


def run(
    spec: TrainSpec,
    precision: Precision,
    device: torch.device,
    x: Tensor,
    y: Tensor,
    batches: list[Tensor],
    tracker: Any,  # hpo.engine.probe.bifurcation's _Tracker (not imported: it imports this module)
    init_models: Callable[[TrainSpec, int, tuple[float, ...]], list[nn.Module]],
) -> None:
    """Probe every init of ``tracker.result`` on ``batches``; outcomes go to ``tracker``."""
    acts = [_activation(spec, a) for a in tracker.alphas]
    inits = tracker.result.inits
    elsize = torch.empty((), dtype=precision.param_dtype).element_size()
    in_features = spec.resolved_channels * spec.resolved_image_size**2
    dims = [in_features] + [spec.width] * spec.depth + [10]
    per_init = elsize * (sum(i * o + o for i, o in zip(dims, dims[1:]))
                         + 2 * spec.batch_size * spec.width * (spec.depth + 1))
    group = max(1, min(inits, _MEMORY_BUDGET // per_init))
    for start in range(0, inits, group):
        ids = torch.arange(start, min(start + group, inits))
        built = time.perf_counter()
        layers = _stack(spec, ids.tolist(), precision, device, init_models, tracker.alphas)
        tracker.result.init_time_s += time.perf_counter() - built
        probe = _probe_accumulated if tracker.accumulate else _probe_group
        probe(spec, layers, ids, x, y, batches, acts, tracker)


def _activation(spec: TrainSpec, alpha: float) -> nn.Module:
    factory = create_activation(
        spec.activation, relu_prime_zero=alpha, relu6_prime_six=spec.relu6_prime_six,
        negative_slope=spec.negative_slope, kink_grad=spec.kink_grad,
    )
    # In place, as in the engine's fc net: baddbmm does not keep its output for backward.
    return factory(inplace=True)


def _stack(
    spec: TrainSpec, ids: list[int], precision: Precision, device: torch.device,
    init_models: Callable[..., list[nn.Module]], alphas: tuple[float, ...],
) -> Layers:
    per_init = []
    for k in ids:
        (model,) = init_models(spec, k, alphas[:1])
        model = model.to(device=device, dtype=precision.param_dtype)
        per_init.append([m for m in model.modules() if isinstance(m, nn.Linear)])
    return [
        (torch.stack([lin[i].weight.detach() for lin in per_init]),
         torch.stack([lin[i].bias.detach() for lin in per_init]))
        for i in range(len(per_init[0]))
    ]


def _probe_group(
    spec: TrainSpec, layers: Layers, alive: Tensor, x: Tensor, y: Tensor,
    batches: list[Tensor], acts: list[nn.Module], tracker: Any,
) -> None:
    result = tracker.result
    compared = len(layers) if tracker.compare == "all" else 1
    weight_only = tracker.compare == "first_weight"
    for b, idx in enumerate(batches):
        xb = data_mod.shape_batch(
            data_mod.gather_rows(x, idx), channels=spec.resolved_channels,
            image_size=spec.resolved_image_size,
        ).flatten(1)
        yb = y.index_select(0, idx)
        hit = _kink_hits(layers, xb, acts[0])
        result.forward_flops += _flops(layers[:-1], len(alive), len(yb))
        kinked = hit.nonzero().flatten()
        gone = kinked[:0]
        if len(kinked):
            grads = [_grads(layers, kinked, xb, yb, act, compared, weight_only,
                            tracker.loss_dtype) for act in acts]
            differs = torch.zeros(len(kinked), dtype=torch.bool, device=xb.device)
            for ga, gb in zip(*grads):
                differs |= (_bits(ga) != _bits(gb)).flatten(1).any(1)
            gone = kinked[differs]
            n = len(kinked) * len(acts)
            result.forward_flops += n * _flops(layers, 1, len(yb))
            result.backward_flops += n * (
                _flops(layers[1:], 1, len(yb)) + _flops(layers[:compared], 1, len(yb))
            )
        for j in gone.tolist():
            tracker.bifurcated(int(alive[j]), b)
        tracker.examined(len(alive), len(kinked))
        if len(gone):
            keep = torch.ones(len(alive), dtype=torch.bool)
            keep[gone.cpu()] = False
            alive = alive[keep]
            if not len(alive):
                return
            keep = keep.to(xb.device)
            layers = [(w[keep], c[keep]) for w, c in layers]


def _probe_accumulated(
    spec: TrainSpec, layers: Layers, alive: Tensor, x: Tensor, y: Tensor,
    batches: list[Tensor], acts: list[nn.Module], tracker: Any,
) -> None:
    """``accumulate``: no ``zero_grad``; each init's compared gradients are summed over the
    mini-batches (as ``.grad`` accumulates) and the two alphas' sums compared by value after
    each one, ``(a - b).abs().sum() != 0``. A mini-batch without a kink adds the same
    gradient to both sums, so sums equal in value stay equal: a no-grad pass finds each
    init's kinked mini-batches, and only inits with one replay the sums up to their last
    (so a sum overflowing to inf or NaN, which their test counts, is seen only there)."""
    kinks = torch.zeros(len(alive), len(batches), dtype=torch.bool)
    for b, idx in enumerate(batches):
        xb, yb = _batch(spec, x, y, idx)
        kinks[:, b] = _kink_hits(layers, xb, acts[0]).cpu()
        tracker.result.forward_flops += _flops(layers[:-1], len(alive), len(yb))
    last = torch.where(kinks.any(1), len(batches) - 1 - kinks.flip(1).int().argmax(1), -1)
    hit = kinks.any(1).nonzero().flatten()
    bifurcated_at = dict(zip(hit.tolist(), _replay(
        spec, [(w[hit], c[hit]) for w, c in layers], kinks[hit], last[hit], x, y, batches,
        acts, tracker)))
    for j in range(len(alive)):
        at = bifurcated_at.get(j)
        seen = len(batches) if at is None else at + 1
        if at is not None:
            tracker.bifurcated(int(alive[j]), at)
        tracker.examined(seen, int(kinks[j, :seen].sum()))


def _replay(
    spec: TrainSpec, layers: Layers, kinks: Tensor, last: Tensor, x: Tensor, y: Tensor,
    batches: list[Tensor], acts: list[nn.Module], tracker: Any,
) -> list[int | None]:
    """Per init with a kink: the 0-based mini-batch whose summed gradients first differ."""
    result = tracker.result
    compared = len(layers) if tracker.compare == "all" else 1
    weight_only = tracker.compare == "first_weight"
    out: list[int | None] = [None] * len(kinks)
    alive = torch.arange(len(kinks))
    sums: list[Tensor] | None = None
    for b, idx in enumerate(batches[: int(last.max()) + 1 if len(last) else 0]):
        xb, yb = _batch(spec, x, y, idx)
        grads = _grads(layers, torch.arange(len(alive)), xb, yb, acts[0], compared,
                       weight_only, tracker.loss_dtype)
        new = grads if sums is None else [s + g for s, g in zip(sums, grads)]
        differs = torch.zeros(len(alive), dtype=torch.bool)
        for s in new:  # a NaN or inf - inf differs from itself in their test
            differs |= _value_differs(s, s).cpu()
        kinked = kinks[alive, b].nonzero().flatten()
        if len(kinked):
            other = _grads(layers, kinked.to(xb.device), xb, yb, acts[1], compared,
                           weight_only, tracker.loss_dtype)
            for i, (s, g) in enumerate(zip(new, other)):
                theirs = g if sums is None else sums[i][kinked] + g
                differs[kinked] |= _value_differs(s[kinked], theirs).cpu()
        n = len(alive) + len(kinked)
        result.forward_flops += n * _flops(layers, 1, len(yb))
        result.backward_flops += n * (_flops(layers[1:], 1, len(yb))
                                      + _flops(layers[:compared], 1, len(yb)))
        for j in differs.nonzero().flatten().tolist():
            out[int(alive[j])] = b
        keep = ~differs & (last[alive] > b)  # past its last kink an init cannot differ
        alive = alive[keep]
        if not len(alive):
            break
        keep = keep.to(xb.device)
        layers = [(w[keep], c[keep]) for w, c in layers]
        sums = [s[keep] for s in new]
    return out


def _batch(spec: TrainSpec, x: Tensor, y: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    xb = data_mod.shape_batch(
        data_mod.gather_rows(x, idx), channels=spec.resolved_channels,
        image_size=spec.resolved_image_size,
    ).flatten(1)
    return xb, y.index_select(0, idx)


def _value_differs(a: Tensor, b: Tensor) -> Tensor:
    """Per init (dim 0): the EPFL notebook's test ``(a - b).abs().sum() != 0``."""
    return (a - b).abs().flatten(1).sum(1) != 0


@torch.no_grad()
def _kink_hits(layers: Layers, xb: Tensor, act: nn.Module) -> Tensor:
    """Per init: did any hidden-layer activation input land exactly on 0?"""
    inits = len(layers[0][0])
    # A few inits at a time through all layers: their activations stay in cache for the
    # kink test and the activation (one slice's GEMM does not depend on the others).
    chunk = max(_CHUNK, 2 * torch.get_num_threads())
    hits = []
    for s in range(0, inits, chunk):
        h = xb.expand(min(chunk, inits - s), *xb.shape)
        hit = None
        for w, c in layers[:-1]:
            z = torch.baddbmm(c[s : s + chunk].unsqueeze(1), h, w[s : s + chunk].transpose(1, 2))
            # ``bool()`` is ``z != 0`` (False for +0 and -0, True for NaN), as the
            # activations' own kink test; a byte-wise min per init is several times faster
            # than ``z == 0``.
            zero = z.bool().view(torch.uint8).flatten(1).amin(1) == 0
            hit = zero if hit is None else hit | zero
            h = act(z)  # no grad: the engine's forward kernel, in place
        hits.append(hit)
    return torch.cat(hits)


def _grads(
    layers: Layers, sub: Tensor, xb: Tensor, yb: Tensor, act: nn.Module, compared: int,
    weight_only: bool = False, loss_dtype: str = "float32",
) -> list[Tensor]:
    """Gradients of the first ``compared`` layers' weights and biases for inits ``sub``
    (``weight_only``: the weights' alone); ``loss_dtype="param"``: the loss in the logits'
    dtype instead of float32."""
    leaves = [(w[sub].requires_grad_(), c[sub].requires_grad_()) for w, c in layers]
    with torch.enable_grad():
        h = xb.expand(len(sub), *xb.shape)
        for i, (w, c) in enumerate(leaves):
            h = torch.baddbmm(c.unsqueeze(1), h, w.transpose(1, 2))
            if i < len(leaves) - 1:
                h = act(h)
        # The training loop's loss per init; the sum passes each loss a gradient of 1.
        cast = loss_dtype == "float32"
        loss = sum(F.cross_entropy(h[k].float() if cast else h[k], yb) for k in range(len(sub)))
        wanted = [p for pair in leaves[:compared] for p in (pair[:1] if weight_only else pair)]
        return list(torch.autograd.grad(loss, wanted))


def _bits(t: Tensor) -> Tensor:
    return t.view(_INT_VIEW[t.element_size()])


def _flops(layers: Layers, inits: int, batch: int) -> float:
    return float(sum(2 * inits * batch * w.shape[1] * w.shape[2] for w, _ in layers))
