"""Prove that every ReLU-family nonlinearity of a model carries the configured derivatives.

A study of ReLU'(0) is meaningless if part of the model silently keeps PyTorch's derivative:
a hard-coded ``nn.ReLU`` that was not replaced, an ``nn.PReLU``, or a functional
``F.relu`` inside some ``forward``. :func:`audit_model` runs two checks and raises
:class:`~hpo.errors.ModelAuditError` when either fails:

1. **Module scan.** Every module that is an instance of one of :data:`RELU_FAMILY_MODULES`
   (``nn.ReLU``, ``nn.ReLU6``, ``nn.LeakyReLU``, ``nn.Hardtanh`` of any bounds, ``nn.PReLU``,
   ``nn.RReLU``, ``nn.Threshold`` and their subclasses) is an error: only
   :class:`~hpo.engine.activations.KinkedActivation` modules may remain.
2. **Functional scan.** One forward pass (eval mode, no grad) runs inside a
   ``TorchDispatchMode`` that sees every ATen op. The ReLU-family ops are those that the
   functional forms reach on CPU (checked on torch 2.14): ``F.relu``/``torch.relu`` ->
   ``aten.relu(_)``; ``F.relu6`` and ``F.hardtanh`` -> ``aten.hardtanh(_)`` (``relu6`` is
   decomposed before dispatch); ``F.leaky_relu`` -> ``aten.leaky_relu(_)``;
   ``F.threshold`` -> ``aten.threshold(_)``; ``F.prelu``/``nn.PReLU`` ->
   ``aten._prelu_kernel``; ``F.rrelu``/``nn.RReLU`` -> ``aten.rrelu_with_noise(_)``; and
   ReLU written as a clamp, ``aten.clamp(_)``/``aten.clamp_min(_)`` with a scalar ``min`` of
   0. (``aten.relu6``, ``prelu`` and ``rrelu`` are listed too in case a backend stops
   decomposing them.) Each such op issued outside the forward of a ``KinkedActivation``
   (whose forward issues exactly one) is an error naming the op and the module whose
   forward made it. Not detected: ReLU spelt with other ops (``torch.maximum(x, 0)``,
   ``x * (x > 0)``, ``torch.where``).

Hardswish, Hardsigmoid, Hardshrink and Softshrink also have kinks but are not ReLU-family:
where an architecture uses them by design (MobileNetV3) they are kept and counted in
:attr:`AuditReport.other_kinked`, so a report says what was left at PyTorch's convention.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from hpo.engine.activations import KinkedActivation
from hpo.errors import ModelAuditError

__all__ = [
    "OTHER_KINKED_MODULES",
    "RELU_FAMILY_MODULES",
    "RELU_FAMILY_OPS",
    "AuditReport",
    "audit_model",
]

logger = logging.getLogger(__name__)

RELU_FAMILY_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.Hardtanh,
    nn.PReLU,
    nn.RReLU,
    nn.Threshold,
)
OTHER_KINKED_MODULES: tuple[type[nn.Module], ...] = (
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardshrink,
    nn.Softshrink,
)
RELU_FAMILY_OPS: tuple[str, ...] = (
    "relu", "relu_", "relu6", "relu6_", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_",
    "threshold", "threshold_", "prelu", "_prelu_kernel", "rrelu", "rrelu_",
    "rrelu_with_noise", "rrelu_with_noise_",
)  # fmt: skip
_CLAMP_OPS = ("clamp", "clamp_", "clamp_min", "clamp_min_")

_PACKETS = {getattr(torch.ops.aten, n): n for n in RELU_FAMILY_OPS}
_CLAMP_PACKETS = {getattr(torch.ops.aten, n): n for n in _CLAMP_OPS}
_MAX_LISTED = 6  # keep the one-line error readable


@dataclass(frozen=True)
class AuditReport:
    """What :func:`audit_model` found in a model that passed.

    Attributes:
        configured_modules: distinct ``KinkedActivation`` modules (a module used twice,
            like ``BasicBlock.relu``, counts once).
        configured_calls_per_forward: their forward calls in one forward pass.
        other_kinked: kinked non-ReLU-family modules kept by design, by type name
            (e.g. ``{"Hardswish": 19}``).
    """

    configured_modules: int
    configured_calls_per_forward: int
    other_kinked: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        text = (
            f"{self.configured_modules} configured activation module(s), "
            f"{self.configured_calls_per_forward} call(s) per forward"
        )
        if self.other_kinked:
            kept = ", ".join(f"{k} x{v}" for k, v in sorted(self.other_kinked.items()))
            text += f"; kept at PyTorch's derivative (not ReLU-family): {kept}"
        return text


def audit_model(
    model: nn.Module,
    example_input: Tensor,
    *,
    name: str | None = None,
    expected: KinkedActivation | None = None,
) -> AuditReport:
    """Check that every ReLU-family nonlinearity of ``model`` is a configured activation.

    Args:
        model: the model; its training mode is restored afterwards and no RNG is consumed.
        example_input: one input batch (on the model's device and dtype) for the forward.
        name: how errors name the model (default: its class name).
        expected: when given, every ``KinkedActivation`` must have its type and settings
            (derivatives, kink_grad, negative_slope).

    Returns:
        An :class:`AuditReport`.

    Raises:
        ModelAuditError: a ReLU-family module or functional op that does not carry the
            configured derivatives.
    """
    label = name or type(model).__name__
    kinked = _scan_modules(model, label, expected)
    calls, outside = _scan_forward(model, example_input)
    if outside:
        total = sum(outside.values())
        where = ", ".join(
            f"aten.{op} x{n} in {path!r} ({kind})"
            for (path, kind, op), n in list(outside.items())[:_MAX_LISTED]
        )
        raise ModelAuditError(
            f"model {label!r} makes {total} ReLU-family op call(s) per forward outside any "
            f"configured activation module, so they keep PyTorch's derivative: {where}; "
            "use an injected activation module (create_activation, or replace_activations "
            "for nn.ReLU/ReLU6/LeakyReLU) instead of F.relu, F.relu6, torch.relu or "
            "clamp(min=0)."
        )
    other = Counter(
        type(m).__name__ for m in model.modules() if isinstance(m, OTHER_KINKED_MODULES)
    )
    report = AuditReport(len(kinked), calls, dict(sorted(other.items())))
    logger.debug("audit of %s: %s", label, report.summary())
    return report


def _scan_modules(
    model: nn.Module, label: str, expected: KinkedActivation | None
) -> list[KinkedActivation]:
    stock, kinked, mismatched = [], [], []
    for path, module in model.named_modules():
        if isinstance(module, KinkedActivation):
            kinked.append(module)
            if expected is not None and _settings(module) != _settings(expected):
                mismatched.append(f"{path!r} {type(module).__name__}({module.extra_repr()})")
        elif isinstance(module, RELU_FAMILY_MODULES):
            stock.append(f"{path or '<root>'!r} ({type(module).__name__})")
    if stock:
        raise ModelAuditError(
            f"model {label!r} has {len(stock)} ReLU-family module(s) that keep PyTorch's "
            f"derivative: {', '.join(stock[:_MAX_LISTED])}; build them with "
            "create_activation (or call replace_activations for nn.ReLU/ReLU6/LeakyReLU); "
            "PReLU, RReLU, Threshold and other Hardtanh bounds are not supported."
        )
    if mismatched:
        raise ModelAuditError(
            f"model {label!r} has {len(mismatched)} activation(s) whose settings differ from "
            f"the configured {type(expected).__name__}({expected.extra_repr()}): "
            f"{', '.join(mismatched[:_MAX_LISTED])}; build every activation from one factory."
        )
    return kinked


def _settings(module: KinkedActivation) -> tuple[Any, ...]:
    return (
        type(module),
        module.derivatives,
        module.kink_grad,
        getattr(module, "negative_slope", None),
    )


class _ReluOpCounter(TorchDispatchMode):
    """Counts ReLU-family ATen ops, split by whether a KinkedActivation is running."""

    def __init__(self, stack: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.stack = stack
        self.inside_kinked = 0
        self.outside: Counter[tuple[str, str, str]] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
        kwargs = kwargs or {}
        op = _relu_family_op(func, args, kwargs)
        if op is not None and not self.inside_kinked:
            path, module = self.stack[-1]
            self.outside[(path or "<root>", type(module).__name__, op)] += 1
        return func(*args, **kwargs)


def _relu_family_op(func: Any, args: Any, kwargs: dict[str, Any]) -> str | None:
    packet = func.overloadpacket
    if packet in _PACKETS:
        return _PACKETS[packet]
    if packet in _CLAMP_PACKETS:
        low = kwargs.get("min", args[1] if len(args) > 1 else None)
        if isinstance(low, (int, float)) and low == 0:
            return _CLAMP_PACKETS[packet] + "(min=0)"
    return None


def _scan_forward(model: nn.Module, example_input: Tensor) -> tuple[int, Counter]:
    """One eval-mode forward: (KinkedActivation calls, ReLU-family ops made outside them)."""
    stack: list[tuple[str, nn.Module]] = [("", model)]
    counter = _ReluOpCounter(stack)
    calls = 0

    def pre_hook(module: nn.Module, _args: Any, path: str) -> None:
        nonlocal calls
        stack.append((path, module))
        if isinstance(module, KinkedActivation):
            calls += 1
            counter.inside_kinked += 1

    def post_hook(module: nn.Module, _args: Any, _out: Any) -> None:
        stack.pop()
        if isinstance(module, KinkedActivation):
            counter.inside_kinked -= 1

    modes = {m: m.training for m in model.modules()}
    handles = []
    try:
        for path, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(lambda m, a, p=path: pre_hook(m, a, p)))
            handles.append(module.register_forward_hook(post_hook, always_call=True))
        model.eval()
        with torch.no_grad(), counter:
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return calls, counter.outside
