"""Functional ReLU-family calls inside a model's ``forward``, run with the configured
derivatives.

:class:`FunctionalRouting` wraps a model whose ``forward`` calls ``F.relu`` and the like
(which module surgery cannot reach): a ``torch.overrides.TorchFunctionMode`` routes each
call site to its own configured activation module, kept in ``.sites``. ``clamp``, other
``hardtanh`` bounds, ``threshold``, ``prelu``, ``rrelu`` are not routed: the audit rejects
them. See docs/design.md#functional-routing-of-frelu-calls.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from hpo.engine.models import activations
from hpo.engine.models.activations import KinkedActivation

__all__ = ["FunctionalRouting"]

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_OURS = activations.__file__

# function -> (name shown, position and name of the inplace argument or True when always
# in place, positions and names of the (min, max) bounds that must be (0, 6) or None)
_Rule = tuple[str, tuple[int, str] | bool, tuple[tuple[int, str], tuple[int, str]] | None]
_RULES: dict[Callable[..., Any], _Rule] = {
    F.relu: ("relu", (1, "inplace"), None),
    torch.relu: ("relu", False, None),
    torch.relu_: ("relu_", True, None),  # also F.relu_
    Tensor.relu: ("relu", False, None),
    Tensor.relu_: ("relu_", True, None),
    F.relu6: ("relu6", (1, "inplace"), None),
    F.leaky_relu: ("leaky_relu", (2, "inplace"), None),
    F.leaky_relu_: ("leaky_relu_", True, None),
    F.hardtanh: ("hardtanh", (3, "inplace"), ((1, "min_val"), (2, "max_val"))),
    F.hardtanh_: ("hardtanh_", True, ((1, "min_val"), (2, "max_val"))),
}
_ROUTED_FUNCTIONS: tuple[str, ...] = (
    "F.relu", "torch.relu", "torch.relu_/F.relu_", "Tensor.relu", "Tensor.relu_", "F.relu6",
    "F.leaky_relu", "F.leaky_relu_", "F.hardtanh(x, 0, 6)", "F.hardtanh_(x, 0, 6)",
)  # fmt: skip
_DEFAULT_BOUNDS = (-1.0, 1.0)


class FunctionalRouting(nn.Module):
    """Runs ``model`` with its functional ReLU-family calls routed to ``factory``.

    Attributes:
        model: the wrapped network (its parameters are ``model.*``).
        sites: one configured activation per call site seen so far; keys read
            ``<module path>/<op>@L<line>`` with ``/`` for the dots of the path.
    """

    def __init__(self, model: nn.Module, factory: Callable[..., KinkedActivation]) -> None:
        super().__init__()
        self.model = model
        self.sites = nn.ModuleDict()
        self._factory = factory
        self._paths: dict[int, tuple[nn.Module, str]] = {}
        self._observers: list[Callable[[str, KinkedActivation, Any], None]] = []

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with _RoutingMode(self):
            return self.model(*args, **kwargs)

    def add_observer(self, fn: Callable[[str, KinkedActivation, Any], None]) -> Callable[[], None]:
        """Call ``fn(site, module, output)`` after each routed call; returns a remover."""
        self._observers.append(fn)
        return lambda: self._observers.remove(fn)

    def extra_repr(self) -> str:
        return f"routes: {', '.join(_ROUTED_FUNCTIONS)}"

    # -- used by _RoutingMode -----------------------------------------------------------
    def _site(self, frame: Any, op: str, inplace: bool) -> tuple[str, KinkedActivation]:
        owner = frame.f_locals.get("self")
        path = "<fn>"
        if isinstance(owner, nn.Module):
            # Entries keep their module: after a deepcopy or a model change, a stale id can
            # never name another module.
            entry = self._paths.get(id(owner))
            if entry is None or entry[0] is not owner:
                self._paths = {id(m): (m, p) for p, m in self.model.named_modules()}
                entry = self._paths.get(id(owner), (owner, type(owner).__name__))
            path = entry[1] or "<root>"
        key = f"{path.replace('.', '/')}/{op}@L{frame.f_lineno}"
        if key not in self.sites:
            self.sites[key] = self._factory(inplace=inplace)
        return key, self.sites[key]

    def _notify(self, key: str, module: KinkedActivation, out: Any) -> None:
        for fn in list(self._observers):
            fn(key, module, out)


class _RoutingMode(TorchFunctionMode):
    def __init__(self, owner: FunctionalRouting) -> None:
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        rule = _RULES.get(func)
        if rule is None:
            return func(*args, **kwargs)
        op, inplace_arg, bounds = rule
        if bounds is not None and _bounds(args, kwargs, bounds) != (0.0, 6.0):
            return func(*args, **kwargs)  # another Hardtanh: the audit's business
        frame = _caller(inspect.currentframe())
        if frame is None or frame.f_code.co_filename == _OURS:
            return func(*args, **kwargs)  # a configured activation's own kernel
        inplace = inplace_arg if isinstance(inplace_arg, bool) else _arg(
            args, kwargs, *inplace_arg, False
        )
        key, module = self.owner._site(frame, op, bool(inplace))
        del frame
        out = module(args[0] if args else kwargs["input"])
        self.owner._notify(key, module, out)
        return out


def _caller(frame: Any) -> Any:
    """The first frame outside torch's own package (the code that made the call)."""
    frame = frame.f_back if frame is not None else None
    while frame is not None and frame.f_code.co_filename.startswith(_TORCH_DIR):
        frame = frame.f_back
    return frame


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _bounds(args: tuple, kwargs: dict, spec: tuple[tuple[int, str], tuple[int, str]]) -> tuple:
    low = _arg(args, kwargs, *spec[0], _DEFAULT_BOUNDS[0])
    high = _arg(args, kwargs, *spec[1], _DEFAULT_BOUNDS[1])
    return (float(low), float(high))
