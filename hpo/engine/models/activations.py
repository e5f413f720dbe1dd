"""ReLU-family activations whose derivative at each kink is a setting.

Each is an explicit ``torch.autograd.Function`` in an ``nn.Module`` shaped like the
built-in, calling PyTorch's own forward and backward kernels: at PyTorch's derivatives it is
bitwise ``nn.ReLU`` / ``nn.ReLU6`` / ``nn.LeakyReLU``; only inputs exactly on a kink change
(``kink_grad`` "multiply" or "set"). Kink hits are counted per module without a host
synchronisation per step.
See docs/design.md#kinked-activations-pytorchs-kernels-a-chosen-derivative.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hpo.engine.models import kinkscan
from hpo.engine.spec import ACTIVATION_NAMES
from hpo.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "KINK_GRAD_MODES",
    "KinkedActivation",
    "LeakyReLU",
    "ReLU",
    "ReLU6",
    "create_activation",
    "kinked_modules",
]

KINK_GRAD_MODES = ("multiply", "set")

_aten = torch.ops.aten


class _KinkFunction(torch.autograd.Function):
    """Forward: the module's PyTorch kernel. Backward: PyTorch's backward kernel, then the
    configured derivative at inputs that were exactly on a kink."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, act: KinkedActivation, records: list[Any]
    ) -> Tensor:
        if act.inplace:
            out = act._primal(x, inplace=True)
            ctx.mark_dirty(out)
        else:
            out = act._primal(x, inplace=False)
        saved = out if act._backward_from_output else x
        masks = [r for r in records if isinstance(r, Tensor)]
        ctx.save_for_backward(saved, *masks)
        ctx.act = act
        ctx.records = [None if isinstance(r, Tensor) else r for r in records]
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        act: KinkedActivation = ctx.act
        saved, *masks = ctx.saved_tensors
        grad_in = act._primal_backward(grad_out, saved)
        mask_iter = iter(masks)
        for i, record in enumerate(ctx.records):
            if record is None:  # dense boolean mask, kept on the device
                mask = next(mask_iter)
                act._count_device(i, mask)
                if act._changes_kink(i):
                    value = act._kink_grad(i, grad_out)
                    grad_in = torch.where(mask, value, grad_in)
            elif record[0]:  # (count, sparse index) on CPU
                count, index = record
                act._count_host(i, count)
                if act._changes_kink(i):
                    grad_in[index] = act._kink_grad(i, grad_out[index])
        return grad_in, None, None


class KinkedActivation(nn.Module):
    """Base class: a ReLU-family nonlinearity with a configurable derivative at each kink.

    Subclasses define ``kinks`` (input values where the function is not differentiable),
    ``_pytorch_derivatives`` (the values PyTorch uses there), ``_primal`` and
    ``_primal_backward`` (PyTorch's own forward and backward kernels).
    """

    kinks: tuple[float, ...] = ()
    name: str = ""
    _backward_from_output = True

    def __init__(
        self, derivatives: tuple[float, ...], inplace: bool = False, kink_grad: str = "multiply"
    ) -> None:
        super().__init__()
        if kink_grad not in KINK_GRAD_MODES:
            raise ConfigError(
                f"Unknown kink_grad {kink_grad!r}. Valid values are {list(KINK_GRAD_MODES)}: "
                "'multiply' applies the chain rule, 'set' reproduces the original paper's code."
            )
        for kink, value in zip(self.kinks, derivatives):
            _check_finite(f"derivative of {self.name} at {kink:g}", value)
        self.derivatives = tuple(float(d) for d in derivatives)
        self._scan = kinkscan.Scanner(self.kinks)
        self.inplace = inplace
        self.kink_grad = kink_grad
        self._host_hits = [0] * len(self.kinks)
        self.register_buffer(
            "_device_hits", torch.zeros(len(self.kinks), dtype=torch.int64), persistent=False
        )
        self._changes = tuple(
            kink_grad == "set" or d != p
            for d, p in zip(self.derivatives, self._pytorch_derivatives())
        )

    # -- what subclasses define -------------------------------------------------------
    def _pytorch_derivatives(self) -> tuple[float, ...]:
        raise NotImplementedError

    def _primal(self, x: Tensor, inplace: bool) -> Tensor:
        raise NotImplementedError

    def _primal_backward(self, grad: Tensor, saved: Tensor) -> Tensor:
        raise NotImplementedError

    # -- public -----------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            # On CPU, usually no input is on a kink (records None): PyTorch's own op is then
            # exact. Elsewhere dense masks, whatever they hold: a test would synchronise.
            records = self._scan(x) if x.is_cpu else self._scan.masks(x)
            if records is not None:
                return _KinkFunction.apply(x, self, records)
        return self._primal(x, inplace=self.inplace)

    @property
    def is_pytorch_default(self) -> bool:
        """True when every derivative equals PyTorch's (the run is then bitwise PyTorch's)."""
        return not any(self._changes)

    def kink_hits(self) -> tuple[int, ...]:
        """Inputs exactly on each kink seen by backward passes since the last reset.

        Reading it synchronises with the device: call it once per epoch, not per step.
        """
        device = self._device_hits.tolist()
        return tuple(h + d for h, d in zip(self._host_hits, device))

    def reset_kink_hits(self) -> None:
        self._host_hits = [0] * len(self.kinks)
        self._device_hits.zero_()

    def extra_repr(self) -> str:
        parts = [f"{self.name}'({k:g})={d:g}" for k, d in zip(self.kinks, self.derivatives)]
        parts += self._extra_settings()
        if self.kink_grad != "multiply":
            parts.append(f"kink_grad={self.kink_grad}")
        if self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)

    def _extra_settings(self) -> list[str]:
        return []

    # -- used by _KinkFunction --------------------------------------------------------
    def _changes_kink(self, i: int) -> bool:
        return self._changes[i]

    def _kink_grad(self, i: int, grad_out: Tensor) -> Tensor:
        if self.kink_grad == "set":
            return torch.full_like(grad_out, self.derivatives[i])
        return grad_out * self.derivatives[i]

    def _count_host(self, i: int, count: int) -> None:
        self._host_hits[i] += count

    def _count_device(self, i: int, mask: Tensor) -> None:
        if self._device_hits.device != mask.device:  # a module used without .to(device)
            self._device_hits = self._device_hits.to(mask.device)
        self._device_hits[i] += mask.sum()


class ReLU(KinkedActivation):
    """ReLU with a configurable derivative at 0 (``prime_zero``; PyTorch uses 0)."""

    kinks = (0.0,)
    name = "relu"

    def __init__(
        self, prime_zero: float = 0.0, inplace: bool = False, kink_grad: str = "multiply"
    ) -> None:
        super().__init__((prime_zero,), inplace=inplace, kink_grad=kink_grad)

    def _pytorch_derivatives(self) -> tuple[float, ...]:
        return (0.0,)

    def _primal(self, x: Tensor, inplace: bool) -> Tensor:
        return torch.relu_(x) if inplace else torch.relu(x)

    def _primal_backward(self, grad: Tensor, saved: Tensor) -> Tensor:
        return _aten.threshold_backward(grad, saved, 0)


class ReLU6(KinkedActivation):
    """ReLU6 with configurable derivatives at 0 and at 6 (PyTorch uses 0 at both)."""

    kinks = (0.0, 6.0)
    name = "relu6"

    def __init__(
        self,
        prime_zero: float = 0.0,
        prime_six: float = 0.0,
        inplace: bool = False,
        kink_grad: str = "multiply",
    ) -> None:
        super().__init__((prime_zero, prime_six), inplace=inplace, kink_grad=kink_grad)

    def _pytorch_derivatives(self) -> tuple[float, ...]:
        return (0.0, 0.0)

    def _primal(self, x: Tensor, inplace: bool) -> Tensor:
        return F.relu6(x, inplace=inplace)

    def _primal_backward(self, grad: Tensor, saved: Tensor) -> Tensor:
        # For x in (0, 6) the output equals x, so the test on the output is the test on x.
        return _aten.hardtanh_backward(grad, saved, 0.0, 6.0)


class LeakyReLU(KinkedActivation):
    """LeakyReLU with a configurable derivative at 0.

    PyTorch's derivative at 0 is ``negative_slope``; ``prime_zero=None`` keeps it.
    """

    kinks = (0.0,)
    name = "leaky_relu"

    def __init__(
        self,
        negative_slope: float = 0.01,
        prime_zero: float | None = None,
        inplace: bool = False,
        kink_grad: str = "multiply",
    ) -> None:
        _check_finite("negative_slope", negative_slope)
        self.negative_slope = float(negative_slope)
        # With a non-negative slope, output > 0 exactly when input > 0: keep only the
        # output (shared with the next layer); otherwise keep the input, as PyTorch does.
        self._backward_from_output = self.negative_slope >= 0
        if inplace and self.negative_slope < 0:
            raise ConfigError(
                f"inplace LeakyReLU needs negative_slope >= 0, got {negative_slope}; "
                "use inplace=False or a non-negative slope."
            )
        value = self.negative_slope if prime_zero is None else prime_zero
        super().__init__((value,), inplace=inplace, kink_grad=kink_grad)

    def _pytorch_derivatives(self) -> tuple[float, ...]:
        return (self.negative_slope,)

    def _primal(self, x: Tensor, inplace: bool) -> Tensor:
        return F.leaky_relu(x, self.negative_slope, inplace=inplace)

    def _primal_backward(self, grad: Tensor, saved: Tensor) -> Tensor:
        return _aten.leaky_relu_backward(
            grad, saved, self.negative_slope, self._backward_from_output
        )

    def _extra_settings(self) -> list[str]:
        return [f"negative_slope={self.negative_slope:g}"]


_CLASSES = {cls.name: cls for cls in (ReLU, ReLU6, LeakyReLU)}
# Keyed by TrainSpec's ACTIVATION_NAMES (a name without a class fails at import).
ACTIVATIONS: dict[str, type[KinkedActivation]] = {n: _CLASSES[n] for n in ACTIVATION_NAMES}


def create_activation(
    name: str,
    *,
    relu_prime_zero: float | None = None,
    relu6_prime_six: float | None = None,
    negative_slope: float = 0.01,
    kink_grad: str = "multiply",
) -> Callable[..., KinkedActivation]:
    """Return a factory ``factory(inplace=False) -> module`` for the named activation.

    ``None`` for a derivative means PyTorch's own value (0, except LeakyReLU'(0) which is
    ``negative_slope``). Settings that do not apply to the activation are rejected.
    """
    if name not in ACTIVATIONS:
        raise ConfigError(
            f"Unknown activation {name!r}. Valid activations are {sorted(ACTIVATIONS)}."
        )
    if relu6_prime_six is not None and name != "relu6":
        raise ConfigError(
            f"relu6_prime_six={relu6_prime_six} only applies to activation 'relu6', "
            f"not {name!r}; remove it or choose activation 'relu6'."
        )
    if negative_slope != 0.01 and name != "leaky_relu":
        raise ConfigError(
            f"negative_slope={negative_slope} only applies to activation 'leaky_relu', "
            f"not {name!r}; remove it or choose activation 'leaky_relu'."
        )
    # Validate once, eagerly, so a bad value fails before any model is built.
    probe = _build(name, relu_prime_zero, relu6_prime_six, negative_slope, kink_grad, False)
    del probe

    def factory(inplace: bool = False) -> KinkedActivation:
        return _build(name, relu_prime_zero, relu6_prime_six, negative_slope, kink_grad, inplace)

    factory.activation_name = name  # type: ignore[attr-defined]
    return factory


def _build(
    name: str,
    prime_zero: float | None,
    prime_six: float | None,
    negative_slope: float,
    kink_grad: str,
    inplace: bool,
) -> KinkedActivation:
    if name == "relu":
        return ReLU(0.0 if prime_zero is None else prime_zero, inplace, kink_grad)
    if name == "relu6":
        return ReLU6(
            0.0 if prime_zero is None else prime_zero,
            0.0 if prime_six is None else prime_six,
            inplace,
            kink_grad,
        )
    return LeakyReLU(negative_slope, prime_zero, inplace, kink_grad)


def kinked_modules(model: nn.Module) -> list[tuple[str, KinkedActivation]]:
    """All configured activation modules of a model, with their qualified names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, KinkedActivation)]


def _check_finite(what: str, value: float) -> None:
    try:
        ok = math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            f"Invalid {what}: {value!r}. It must be a finite real number (e.g. 0, 0.5 or 1)."
        )
