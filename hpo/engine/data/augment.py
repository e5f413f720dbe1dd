"""Training-time augmentation, batched on the data's device: no per-sample PIL.

``crop_flip`` is the CIFAR recipe of torchvision's ``RandomCrop(32, padding=4)`` and
``RandomHorizontalFlip()``: each image is padded by 4 pixels on every side, a window of its
own size is cut at a random offset (0 to 8 in each direction), then it is mirrored left to
right with probability 1/2.

Padding value. torchvision's pipeline crops the uint8/PIL image *before* ``ToTensor`` and
``Normalize``, so the padding is black (pixel 0) and becomes ``(0 - mean) / std`` after
normalisation. Our splits are normalised once, when they are prepared, so we pad each
channel with the prepared value of a black pixel (:func:`black_pixel`): the same numbers as
torchvision's order of operations, not a zero that would be mid-grey once normalised.

Randomness. :class:`CropFlip` draws every offset and flip of an epoch at once, on the CPU,
from its own generator seeded from the run's seed, in the batch order; one copy per epoch
moves them to the data's device (like the permutation), so no step waits for the host.
The draws depend only on the seed and the number of rows: two runs that differ only in
ReLU'(0) see the same augmented batches, and a run reproduces bitwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

__all__ = ["PADDING", "CropFlip", "black_pixel", "crop_flip"]

PADDING = 4
# Offsets the augmentation generator from the batch-order generator seeded with the same seed.
_SEED_OFFSET = 0x5EED_A06


def crop_flip(
    x: Tensor, offsets: Tensor, flips: Tensor, fill: Tensor, padding: int = PADDING
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

    def __init__(self, seed: int, fill: Tensor, padding: int = PADDING) -> None:
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
