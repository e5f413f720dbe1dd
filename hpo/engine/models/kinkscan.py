"""Which inputs of an activation are exactly on a kink, found with PyTorch ops.

The test is the cheapest measured: ``(x - k).bool()`` and its byte-wise ``min`` (0 exactly
when some input is on kink ``k``); positions are only looked for on a hit, and kept as a
sparse index on the CPU; other devices get dense masks and on-device counts.
See docs/design.md#finding-inputs-on-a-kink-cheaply.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["Scanner", "sparse_if_rare"]


class Scanner:
    """The kink search for one activation's kinks (what its module calls every forward)."""

    __slots__ = ("kinks",)

    def __init__(self, kinks: tuple[float, ...]) -> None:
        self.kinks = tuple(float(k) for k in kinks)

    def __call__(self, x: Tensor) -> list[tuple[int, Any]] | None:
        """Per kink, ``(count, positions)`` of the elements of CPU tensor ``x`` exactly on
        it (see :func:`sparse_if_rare`), or ``None`` when no element is on any kink."""
        x = x.detach()  # the search is not part of the graph
        if x.numel() == 0:
            return None
        off_kink = [(x - kink if kink else x).bool() for kink in self.kinks]
        if all(off.view(torch.uint8).min() for off in off_kink):
            return None
        return [sparse_if_rare(off.logical_not_()) for off in off_kink]

    def masks(self, x: Tensor) -> list[Tensor]:
        """Per kink, the dense boolean mask of ``x == kink``, computed on ``x``'s device
        without reading anything back (the path for GPUs)."""
        x = x.detach()
        return [x == kink for kink in self.kinks]

    def __repr__(self) -> str:
        return f"Scanner(kinks={self.kinks})"


def sparse_if_rare(mask: Tensor) -> tuple[int, Any]:
    """``(count, positions)`` of a CPU kink mask: a sparse index when kinks are rare (the
    usual case: it costs almost no memory), else the mask itself."""
    count = int(torch.count_nonzero(mask))
    if count == 0:
        return 0, None
    if 8 * mask.dim() * count < mask.numel():
        return count, mask.nonzero(as_tuple=True)
    return count, mask  # kinks are everywhere (e.g. zero bias on blank image regions)
