"""Prove that every ReLU-family nonlinearity of a model carries the configured derivatives.

:func:`audit_model` raises :class:`~hpo.errors.ModelAuditError` on a ReLU-family module
that is not a configured activation (module scan), or on a ReLU-family node of the autograd
graph of one forward pass that no configured activation made (graph scan: ``F.relu``,
``clamp(min=0)``...). Other kinked ops (Hardswish...) are kept and reported.
See docs/design.md#the-model-audit-proof-that-every-kink-is-configured.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from hpo.engine.models.activations import KinkedActivation
from hpo.engine.models.routing import FunctionalRouting
from hpo.errors import ModelAuditError

__all__ = [
    "RELU_FAMILY_MODULES",
    "RELU_FAMILY_NODES",
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
_OTHER_KINKED_MODULES: tuple[type[nn.Module], ...] = (
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardshrink,
    nn.Softshrink,
)
# autograd node name -> op shown in errors (in-place variants make the same nodes or "...1")
RELU_FAMILY_NODES: dict[str, str] = {
    "ReluBackward0": "relu",
    "HardtanhBackward0": "hardtanh",
    "LeakyReluBackward0": "leaky_relu",
    "LeakyReluBackward1": "leaky_relu_",
    "ThresholdBackward0": "threshold",
    "ThresholdBackward1": "threshold_",
    "PreluKernelBackward0": "prelu",
    "RreluWithNoiseBackward0": "rrelu",
    "RreluWithNoiseBackward1": "rrelu_",
}
_CLAMP_NODES = {"ClampBackward1": "clamp(min=0)", "ClampMinBackward0": "clamp_min(min=0)"}
_MAX_LISTED = 6  # keep the one-line error readable


@dataclass(frozen=True)
class AuditReport:
    """What :func:`audit_model` found in a model that passed.

    Attributes:
        configured_modules: distinct ``KinkedActivation`` modules called in one forward (a
            module used twice, like ``BasicBlock.relu``, counts once), routed sites excluded.
        configured_calls_per_forward: their forward calls in one forward pass.
        other_kinked: kinked non-ReLU-family modules kept by design, by type name
            (e.g. ``{"Hardswish": 19}``).
        functional_sites: distinct functional call sites routed by ``FunctionalRouting``.
        functional_calls_per_forward: routed calls in one forward pass.
    """

    configured_modules: int
    configured_calls_per_forward: int
    other_kinked: dict[str, int] = field(default_factory=dict)
    functional_sites: int = 0
    functional_calls_per_forward: int = 0

    @property
    def configured_sites(self) -> int:
        """Every configured site seen in one forward: modules and functional calls alike."""
        return self.configured_modules + self.functional_sites

    def summary(self) -> str:
        text = (
            f"{self.configured_modules} configured activation module(s), "
            f"{self.configured_calls_per_forward} call(s) per forward"
        )
        if self.functional_sites:
            text += (
                f"; {self.functional_sites} routed functional site(s), "
                f"{self.functional_calls_per_forward} call(s) per forward"
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
    """Check that every ReLU-family nonlinearity of ``model`` is a configured activation;
    return an :class:`AuditReport`.

    Args:
        model: the model; its training mode is restored afterwards and no RNG is consumed.
        example_input: one input batch (on the model's device and dtype) for the forward.
        name: how errors name the model (default: its class name).
        expected: when given, every ``KinkedActivation`` must have its type and settings
            (derivatives, kink_grad, negative_slope).

    Raises:
        ModelAuditError: a ReLU-family module or functional op that does not carry the
            configured derivatives.
    """
    label = name or type(model).__name__
    _scan_modules(model, label, expected)
    scan = _scan_graph(model, example_input)
    if scan.outside:
        total = sum(scan.outside.values())
        where = ", ".join(
            f"{op} x{n} in {path!r} ({kind})"
            for (path, kind, op), n in list(scan.outside.items())[:_MAX_LISTED]
        )
        raise ModelAuditError(
            f"model {label!r} makes {total} ReLU-family op call(s) per forward outside any "
            f"configured activation, so they keep PyTorch's derivative: {where}; use "
            "nn.ReLU/F.relu, F.relu6 or F.leaky_relu (replaced or routed to the configured "
            "activation; clamp(min=0), threshold, prelu, rrelu, other hardtanh bounds and "
            "torch.ops.aten calls are not) or an injected activation (create_activation)."
        )
    other = Counter(
        type(m).__name__ for m in model.modules() if isinstance(m, _OTHER_KINKED_MODULES)
    )
    report = AuditReport(
        len(scan.modules),
        scan.module_calls,
        dict(sorted(other.items())),
        len(scan.sites),
        scan.site_calls,
    )
    logger.debug("audit of %s: %s", label, report.summary())
    return report


def _scan_modules(model: nn.Module, label: str, expected: KinkedActivation | None) -> None:
    stock, mismatched = [], []
    for path, module in model.named_modules():
        if isinstance(module, KinkedActivation):
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


def _settings(module: KinkedActivation) -> tuple[Any, ...]:
    return (
        type(module),
        module.derivatives,
        module.kink_grad,
        getattr(module, "negative_slope", None),
    )


def _family_op(node: Any) -> str | None:
    node_name = node.name()
    if node_name in RELU_FAMILY_NODES:
        return RELU_FAMILY_NODES[node_name]
    if node_name in _CLAMP_NODES:
        low = getattr(node, "_saved_min", None)
        if isinstance(low, (int, float)) and low == 0:
            return _CLAMP_NODES[node_name]
    return None


@dataclass
class _Scan:
    modules: set[int] = field(default_factory=set)
    module_calls: int = 0
    sites: set[str] = field(default_factory=set)
    site_calls: int = 0
    outside: Counter = field(default_factory=Counter)


class _GraphWalker:
    """Attributes each autograd node to the module running when it was made."""

    def __init__(self, scan: _Scan) -> None:
        self.scan = scan
        self.seen: set[Any] = set()
        self.configured: set[Any] = set()  # output nodes of configured activations

    def mark_configured(self, output: Any) -> None:
        for t in _tensors(output):
            if t.grad_fn is not None:
                self.configured.add(t.grad_fn)

    def claim(self, values: Any, path: str, module: nn.Module) -> None:
        todo = [t.grad_fn for t in _tensors(values) if t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or node in self.seen:
                continue
            self.seen.add(node)
            op = _family_op(node)
            if op is not None and node not in self.configured:
                self.scan.outside[(path or "<root>", type(module).__name__, op)] += 1
            todo.extend(n for n, _ in node.next_functions)


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _scan_graph(model: nn.Module, example_input: Tensor) -> _Scan:
    """One eval-mode forward with gradients on; the escapes are in ``_Scan.outside``."""
    scan = _Scan()
    walker = _GraphWalker(scan)
    stack: list[tuple[str, nn.Module]] = [("", model)]
    routers = [m for m in model.modules() if isinstance(m, FunctionalRouting)]
    site_modules = {id(s) for r in routers for s in r.sites.modules()}

    def on_routed(key: str, module: KinkedActivation, out: Any) -> None:
        scan.sites.add(f"{id(module)}:{key}")
        scan.site_calls += 1
        walker.mark_configured(out)

    def pre_hook(module: nn.Module, args: Any, path: str) -> None:
        walker.claim(args, *stack[-1])
        stack.append((path, module))

    def post_hook(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(module, KinkedActivation) and id(module) not in site_modules:
            scan.modules.add(id(module))
            scan.module_calls += 1
            walker.mark_configured(output)
        walker.claim(output, *stack[-1])
        stack.pop()

    modes = {m: m.training for m in model.modules()}
    removers = [router.add_observer(on_routed) for router in routers]
    handles: list[Any] = []
    try:
        for path, module in model.named_modules():
            if id(module) in site_modules:
                continue  # routed sites are seen through the observer
            handles.append(module.register_forward_pre_hook(lambda m, a, p=path: pre_hook(m, a, p)))
            handles.append(module.register_forward_hook(post_hook, always_call=True))
        model.eval()
        with torch.enable_grad():
            # A non-leaf that needs grad: in-place ops on the input stay legal, and a
            # ReLU applied to the raw input is in the graph too.
            x = example_input.detach().clone()
            if x.is_floating_point():
                x = x.requires_grad_().clone()
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for remove in removers:
            remove()
        for module, training in modes.items():
            module.training = training
    return scan
