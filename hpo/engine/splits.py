"""The train, validation and test tensors of a run, prepared once per process.

The official training set is split (seeded) into train and validation; the official test
set is kept for the final test accuracy. Each split's images are prepared for the model
(:func:`hpo.engine.data.prepare_images`) once per setting and shared by the trials a worker
runs. Training batches are gathered from random rows of the training split: on CPU as bytes
through a table of the input values where that gives the same bytes
(:mod:`hpo.engine.bytebatches`), from huge pages (:mod:`hpo.engine.hugepages`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hpo.engine import data as data_mod
from hpo.engine.bytebatches import ByteBatches, byte_batches
from hpo.engine.hugepages import on_huge_pages

__all__ = ["Split", "prepared_splits"]


@dataclass
class Split:
    """A split's model inputs ``x`` and labels ``y`` on the run's device."""

    x: Tensor
    y: Tensor
    bytes: ByteBatches | None = None  # training split on CPU: batches from uint8 rows

    def batcher(self, x_out: Tensor, y_out: Tensor) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        """``batch(idx) -> (x, y)``: rows ``idx`` of ``x`` and ``y``, written into the
        buffers ``x_out`` and ``y_out`` (reused from step to step); the same values on the
        byte path and on the ``index_select`` path."""
        if self.bytes is not None and self.y.dtype == torch.int64:
            return self.bytes.batcher(x_out, self.y, y_out)

        def batch(idx: Tensor) -> tuple[Tensor, Tensor]:
            xb = data_mod.gather_rows(self.x, idx, out=x_out)
            return xb, torch.index_select(self.y, 0, idx, out=y_out[: len(idx)])

        return batch

    def rows(self, start: int, stop: int) -> Tensor:
        """Model inputs of rows ``start:stop`` (evaluation reads the splits in order)."""
        return self.x[start:stop]


@functools.lru_cache(maxsize=2)
def prepared_splits(
    raw: data_mod.RawDataset,
    val_size: int,
    train_subset: int | None,
    split_seed: int,
    normalize: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[Split, Split, Split]:
    """Train, validation and test tensors, ready for the model; cached per process.

    A worker runs many trials on the same data: preparing the splits (indexing, scaling,
    casting) is done once per setting instead of once per trial. The loop only reads them
    (batches are gathered into new tensors), so sharing is safe. ``raw`` is hashed by
    identity, and the data module caches it per process.
    """
    own_val = raw.val_images is not None  # an image folder's val/
    train_idx, val_idx = data_mod.split_indices(
        len(raw.train_labels), val_size=val_size, train_subset=train_subset,
        split_seed=split_seed, own_validation=own_val,
    )

    def split(images: Tensor, labels: Tensor) -> Split:
        x = data_mod.prepare_images(
            images, dataset=raw.name, normalize=normalize, dtype=dtype, device=device
        )
        return Split(x, labels.to(device))

    codes = raw.train_images[train_idx]
    train = split(codes, raw.train_labels[train_idx])
    # Batches are gathered from random rows: read as bytes through a table of the input
    # values where that gives the same bytes (bytebatches.py), from huge pages (fewer TLB
    # misses) either way.
    train.bytes = byte_batches(
        on_huge_pages(codes.contiguous()), train.x,
        lambda u8: data_mod.prepare_images(u8, dataset=raw.name, normalize=normalize,
                                           dtype=dtype),
    ) if train.x.is_cpu and train.x.shape[1] == 1 else None  # one table: one channel
    if train.bytes is None:
        train.x = on_huge_pages(train.x)
    return (
        train,
        split(raw.val_images, raw.val_labels) if own_val
        else split(raw.train_images[val_idx], raw.train_labels[val_idx]),
        split(raw.test_images, raw.test_labels),
    )


