"""Numerical precision of a run: parameter dtype, autocast, and optimizer arithmetic.

Pure precisions (``float16``, ``bfloat16``, ``float32``, ``float64``) train the whole model,
its gradients and the optimizer state in that dtype, as in the paper. The loss is computed
from logits cast to float32 (cross-entropy's log-sum-exp would overflow in float16); the
gradient flows back through that cast into the model's dtype.

``amp_float16`` / ``amp_bfloat16`` keep float32 parameters and run forward and backward under
``torch.autocast`` (float16 with a gradient scaler). They are a separate, clearly named mode.

``tf32`` (CUDA only) is float32 storage with TF32 math: float32 parameters, and matrix
products and cuDNN convolutions rounding their inputs to TF32 (10-bit mantissa). Every other
precision runs with TF32 off, so ``float32`` is IEEE float32 on every device
(:mod:`hpo.engine.numerics.flags` sets and restores the flags).

Adam in pure float16: its default epsilon 1e-8 is below float16's smallest subnormal
(~6e-8), so it rounds to 0 inside the update and any parameter whose squared-gradient average
is 0 gets 0/0 = NaN. We therefore keep the optimizer arithmetic in the run's dtype (the
paper's setting) and, when no epsilon is given, use 1e-8 where the dtype can hold it and the
dtype's smallest normal number otherwise (float16: 2**-14 ~ 6.1e-5). An explicitly configured
epsilon that rounds to 0 in the dtype is an error, never silently changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hpo.engine.spec import PRECISIONS
from hpo.errors import ConfigError

__all__ = ["Precision", "resolve_adam_eps", "resolve_precision"]

DEFAULT_ADAM_EPS = 1e-8


@dataclass(frozen=True)
class Precision:
    name: str
    param_dtype: torch.dtype
    autocast_dtype: torch.dtype | None  # None: no autocast (pure precision)
    tf32: bool = False  # float32 matmuls/convolutions in TF32 (CUDA tensor cores)

    @property
    def uses_grad_scaler(self) -> bool:
        return self.autocast_dtype is torch.float16


_DEFINED = {
    "float16": Precision("float16", torch.float16, None),
    "bfloat16": Precision("bfloat16", torch.bfloat16, None),
    "float32": Precision("float32", torch.float32, None),
    "tf32": Precision("tf32", torch.float32, None, tf32=True),
    "float64": Precision("float64", torch.float64, None),
    "amp_float16": Precision("amp_float16", torch.float32, torch.float16),
    "amp_bfloat16": Precision("amp_bfloat16", torch.float32, torch.bfloat16),
}
_PRECISIONS = {name: _DEFINED[name] for name in PRECISIONS}  # the names are TrainSpec's


def resolve_precision(name: str) -> Precision:
    try:
        return _PRECISIONS[name]
    except KeyError:
        raise ConfigError(
            f"Unknown precision {name!r}. Valid values are {sorted(_PRECISIONS)}."
        ) from None


def resolve_adam_eps(eps: float | None, dtype: torch.dtype) -> float:
    """The epsilon Adam uses in ``dtype``: see the module docstring for the rule."""
    if eps is None:
        if torch.tensor(DEFAULT_ADAM_EPS, dtype=dtype).item() != 0.0:
            return DEFAULT_ADAM_EPS
        return float(torch.finfo(dtype).tiny)
    if torch.tensor(eps, dtype=dtype).item() == 0.0:
        tiny = torch.finfo(dtype).tiny
        raise ConfigError(
            f"adam_eps={eps:g} rounds to 0 in {str(dtype).removeprefix('torch.')}, so Adam would "
            f"divide 0 by 0; use adam_eps >= {tiny:.3g} (the dtype's smallest normal number) "
            "or leave it unset to get that value automatically."
        )
    return float(eps)
