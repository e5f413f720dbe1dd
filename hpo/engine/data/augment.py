"""Training-time augmentation, batched on the data's device: no per-sample PIL.

``crop_flip`` is torchvision's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``,
padding with the prepared value of a black pixel (:func:`black_pixel`, as torchvision's
order of operations gives). :class:`CropFlip` draws an epoch's offsets and flips at once
from its own seeded generator: they depend only on the seed and the number of rows.
See docs/design.md#batched-crop-and-flip-augmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

__all__ = ["CropFlip", "black_pixel", "crop_flip"]

_PADDING = 4
# Offsets the augmentation generator from the batch-order generator seeded with the same seed.
_SEED_OFFSET = 0x5EED_A06


def crop_flip(
    x: Tensor, offsets: Tensor, flips: Tensor, fill: Tensor, padding: int = _PADDING
) -> Tensor:
    """Random crops and flips of a batch, as given.

    Args:
        x: images (N, C, H, W).
        offsets: int64 (N, 2) on ``x``'s device: the crop's top and left corner in the
            padded image, each in ``[0, 2 * padding]`` (``padding, padding``: no shift).
        flips: bool (N,) on ``x``'s device: mirror left to right.
        fill: (C,) padding value per channel.
        padding: pixels added on each side before cropping.

    Returns:
        (N, C, H, W) in channels-last memory layout (what a gather over (N, H, W) gives;
        call ``.contiguous()`` for the default layout).
    """
    n, c, h, w = x.shape
    padded = fill.to(x.dtype).view(1, c, 1, 1).expand(n, c, h + 2 * padding, w + 2 * padding)
    padded = padded.clone()
    padded[:, :, padding : padding + h, padding : padding + w] = x
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (N, H)
    cols = torch.arange(w, device=x.device).expand(n, w)
    # A flip reads the columns right to left: it is part of the same gather.
    cols = torch.where(flips[:, None], w - 1 - cols, cols) + offsets[:, 1:]  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indices around a slice: the result is (N, H, W, C).
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


def black_pixel(
    prepare: Callable[[Tensor], Tensor], channels: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """(C,) the prepared value of a black pixel: ``prepare`` turns uint8 (1, C, 1, 1) images
    into model inputs (the split's own preparation, normalisation included)."""
    zero = torch.zeros((1, channels, 1, 1), dtype=torch.uint8)
    return prepare(zero).to(dtype=dtype, device=device).reshape(-1)


class CropFlip:
    """Per-epoch draws of :func:`crop_flip`'s offsets and flips, from the run's seed."""

    def __init__(self, seed: int, fill: Tensor, padding: int = _PADDING) -> None:
        self.generator = torch.Generator().manual_seed(seed + _SEED_OFFSET)
        self.fill, self.padding = fill, padding

    def epoch(self, batches: Iterator[tuple[Tensor, Tensor]], rows: int
              ) -> Iterator[tuple[Tensor, Tensor]]:
        """``batches`` (an epoch of ``rows`` rows in order) with each image augmented."""
        offsets = torch.randint(0, 2 * self.padding + 1, (rows, 2), generator=self.generator)
        flips = torch.rand(rows, generator=self.generator) < 0.5
        device = self.fill.device
        offsets, flips = offsets.to(device), flips.to(device)
        start = 0
        for xb, yb in batches:
            stop = start + len(xb)
            yield crop_flip(xb, offsets[start:stop], flips[start:stop], self.fill,
                            self.padding), yb
            start = stop
