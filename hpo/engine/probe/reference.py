"""The probe's reference path (``method: reference``, any model): per init, the engine's
own two models (:func:`hpo.engine.models.build.build_model`, one per ReLU'(0)), one mini-batch at a
time, gradients by autograd compared bit for bit. Also the pieces both paths share: how an
init's models are built, and what "bitwise equal" means.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hpo.engine.data import tensors as data_mod
from hpo.engine.models.activations import kinked_modules
from hpo.engine.models.build import build_model
from hpo.engine.numerics.precision import Precision
from hpo.engine.spec import TrainSpec
from hpo.engine.step import shape_for_model

__all__ = [
    "bits",
    "bitwise_equal",
    "compared_params",
    "init_models",
    "reference_init",
    "rng_devices",
    "rng_state",
    "set_rng_state",
]


def init_models(spec: TrainSpec, k: int, alphas: tuple[float, ...]) -> list[nn.Module]:
    """Init ``k``'s models, one per alpha, as ``hpo train --seed <spec.seed + k>`` builds
    them; the global RNG is left where that run's training would continue from."""
    models = []
    for alpha in alphas:
        torch.manual_seed(spec.seed + k)
        models.append(build_model(spec.replace(relu_prime_zero=alpha)).model)
    return models


def reference_init(
    spec: TrainSpec, k: int, precision: Precision, device: torch.device,
    x: Tensor, y: Tensor, batches: list[Tensor], tracker: Any,
) -> None:
    """Init ``k`` through the engine's own models, one mini-batch at a time."""
    built = time.perf_counter()
    models = init_models(spec, k, tracker.alphas)
    tracker.result.init_time_s += time.perf_counter() - built
    models = [m.to(device=device, dtype=precision.param_dtype) for m in models]
    compared = [compared_params(m, tracker.compare) for m in models]
    acts = kinked_modules(models[0])
    for b, idx in enumerate(batches):
        xb, yb = shape_for_model(spec, data_mod.gather_rows(x, idx)), y.index_select(0, idx)
        before = rng_state(device)  # both models must draw the same dropout masks
        for _, act in acts:
            act.reset_kink_hits()
        grads_a = _reference_grads(models[0], compared[0], xb, yb, precision, tracker.loss_dtype)
        # Inputs exactly on 0 are the only ones whose derivative differs (index 0 of
        # ``kinks`` is 0 for every ReLU-family activation).
        kinked = any(act.kink_hits()[0] for _, act in acts)
        differs = False
        if kinked:
            after = rng_state(device)
            set_rng_state(device, before)
            grads_b = _reference_grads(models[1], compared[1], xb, yb, precision,
                                       tracker.loss_dtype)
            set_rng_state(device, after)
            differs = any(not bitwise_equal(a, g) for a, g in zip(grads_a, grads_b))
        if differs:
            tracker.bifurcated(k, b)
        tracker.examined(1, int(kinked))
        if differs:
            return


def rng_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


def rng_state(device: torch.device) -> list[Tensor]:
    cuda = [torch.cuda.get_rng_state(d) for d in rng_devices(device)]
    return [torch.get_rng_state(), *cuda]


def set_rng_state(device: torch.device, state: list[Tensor]) -> None:
    torch.set_rng_state(state[0])
    for d, s in zip(rng_devices(device), state[1:]):
        torch.cuda.set_rng_state(s, d)


def compared_params(model: nn.Module, compare: str) -> list[nn.Parameter]:
    if compare == "all":
        return list(model.parameters())
    # The first module (in registration order: the input layer) that owns parameters.
    first = next(m for m in model.modules() if any(True for _ in m.parameters(recurse=False)))
    if compare == "first_weight":
        return [first.weight]
    return list(first.parameters(recurse=False))


def _reference_grads(
    model: nn.Module, params: list[nn.Parameter], xb: Tensor, yb: Tensor, precision: Precision,
    loss_dtype: str = "float32",
) -> list[Tensor | None]:
    with _autocast(precision, xb.device):
        logits = model(xb)
    # As the training loop: cross-entropy from float32 logits, scaled as GradScaler's first
    # step scales it, so the compared gradients are the ones training computes
    # (``loss_dtype="param"``: in the logits' own dtype).
    loss = F.cross_entropy(logits.float() if loss_dtype == "float32" else logits, yb)
    if precision.uses_grad_scaler:
        loss = loss * torch.amp.GradScaler(xb.device.type).get_scale()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return list(grads)


def _autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager:
    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.autocast_dtype)


_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(t: Tensor) -> Tensor:
    """``t``'s bit patterns as integers of its size, so ``-0.0 != 0.0`` and NaN == same NaN."""
    return t.detach().view(_INT_VIEW[t.element_size()])


def bitwise_equal(a: Tensor | None, b: Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))
