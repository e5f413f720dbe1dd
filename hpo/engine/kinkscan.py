"""Is any value of a CPU tensor exactly on a kink, and where? The compiled scan, where it
applies, and the sparse positions of the hits.

The activations must know this before PyTorch's (possibly in-place) kernel runs. With
PyTorch ops it takes a cast to bool and a byte-wise min: two kernels, a temporary, and
about the time of the ReLU itself. ``hpo/engine/_kinkscan.c`` reads the input once,
allocates nothing, and compares bit patterns: a value is on kink ``k`` exactly when its
bits, masked, equal ``k``'s (for ``k = 0`` the sign bit is masked off, so +0 and -0 count,
subnormals do not; any other ``k`` has one representation, and NaN never matches). This is
the same test as ``x - k == 0`` in IEEE arithmetic, which the PyTorch path uses.

:func:`any_on_kinks` returns ``None`` where the scan does not apply (extension not built,
tensor not on CPU or not contiguous, a dtype other than the four float precisions, more
than two kinks, a kink the dtype cannot represent); the caller then uses PyTorch ops.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

try:  # built by `pip install` from setup.py; optional (no C compiler -> PyTorch ops)
    from hpo.engine import _kinkscan as _native
except ImportError:  # pragma: no cover - depends on the install
    _native = None

__all__ = ["Scanner", "any_on_kinks", "native_available", "sparse_if_rare"]

_BITS = {torch.float16: torch.int16, torch.bfloat16: torch.int16,
         torch.float32: torch.int32, torch.float64: torch.int64}


def native_available() -> bool:
    """Whether the compiled scan was built and imported."""
    return _native is not None


@functools.cache
def _patterns(kinks: tuple[float, ...], dtype: torch.dtype) -> tuple[int, ...] | None:
    """``(itemsize, mask0, pattern0, mask1, pattern1)`` for the scan, or None."""
    if dtype not in _BITS or not 1 <= len(kinks) <= 2:
        return None
    size = dtype.itemsize
    every = (1 << (8 * size)) - 1
    args: list[int] = []
    for kink in kinks:
        value = torch.tensor(kink, dtype=dtype)
        if float(value) != kink:
            return None  # not representable: leave the comparison to PyTorch
        if kink == 0:
            args += [every >> 1, 0]  # all but the sign bit: +0 and -0
        else:
            args += [every, int(value.view(_BITS[dtype]).item()) & every]
    if len(kinks) == 1:
        args += args
    return (size, *args)


class Scanner:
    """:func:`any_on_kinks` for one set of kinks, its per-dtype arguments computed once:
    what an activation module calls on every forward (the fewest Python steps)."""

    __slots__ = ("_args", "kinks")

    def __init__(self, kinks: tuple[float, ...]) -> None:
        self.kinks = tuple(kinks)
        self._args: dict[torch.dtype, tuple[int, ...]] = {}

    def __call__(self, x: Tensor) -> bool | None:
        """Whether a CPU tensor ``x`` has an element on a kink; None where the scan does not
        apply (the caller has checked that ``x`` is on the CPU)."""
        args = self._args.get(x.dtype)
        if args is None:
            args = self._args[x.dtype] = (
                (_patterns(self.kinks, x.dtype) or ()) if _native is not None else ()
            )
        if not args or _native is None or not x.is_contiguous():
            return None
        return _native.any_on_kinks(x.data_ptr(), x.numel(), args)

    def __getstate__(self) -> tuple[float, ...]:
        return self.kinks

    def __setstate__(self, kinks: tuple[float, ...]) -> None:
        self.__init__(kinks)


def any_on_kinks(x: Tensor, kinks: tuple[float, ...]) -> bool | None:
    """Whether any element of ``x`` equals one of ``kinks`` (at most two) exactly.

    ``None`` when the compiled scan does not apply; see the module docstring.
    """
    if _native is None or not x.is_cpu or not x.is_contiguous():
        return None
    args = _patterns(kinks, x.dtype)
    if args is None:
        return None
    return _native.any_on_kinks(x.data_ptr(), x.numel(), args)


def sparse_if_rare(mask: Tensor) -> tuple[int, Any]:
    """``(count, positions)`` of a CPU kink mask: a sparse index when kinks are rare (the
    usual case: it costs almost no memory), else the mask itself."""
    count = int(torch.count_nonzero(mask))
    if count == 0:
        return 0, None
    if 8 * mask.dim() * count < mask.numel():
        return count, mask.nonzero(as_tuple=True)
    return count, mask  # kinks are everywhere (e.g. zero bias on blank image regions)
