"""Numerical precision of a run: parameter dtype, autocast, and optimizer arithmetic.

Pure precisions train the model, its gradients and the optimizer state in one dtype (the
loss from float32 logits); ``amp_float16`` / ``amp_bfloat16`` keep float32 parameters under
``torch.autocast``; ``tf32`` (CUDA only) is float32 with TF32 math. Adam's default epsilon
becomes the dtype's smallest normal where 1e-8 rounds to 0.
See docs/design.md#precisions-and-optimizer-arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hpo.engine.spec import PRECISIONS
from hpo.errors import ConfigError

__all__ = ["Precision", "resolve_adam_eps", "resolve_precision"]

_DEFAULT_ADAM_EPS = 1e-8


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
        if torch.tensor(_DEFAULT_ADAM_EPS, dtype=dtype).item() != 0.0:
            return _DEFAULT_ADAM_EPS
        return float(torch.finfo(dtype).tiny)
    if torch.tensor(eps, dtype=dtype).item() == 0.0:
        tiny = torch.finfo(dtype).tiny
        raise ConfigError(
            f"adam_eps={eps:g} rounds to 0 in {str(dtype).removeprefix('torch.')}, so Adam would "
            f"divide 0 by 0; use adam_eps >= {tiny:.3g} (the dtype's smallest normal number) "
            "or leave it unset to get that value automatically."
        )
    return float(eps)
