"""The train, validation and test tensors of a run, prepared once per process.

The official training set is split (seeded) into train and validation; the official test
set is kept for the final test accuracy. Each split's images are prepared for the model
(:func:`hpo.engine.data.tensors.prepare_images`) once per setting and shared by the trials a worker
runs; training batches are gathered from them by :mod:`hpo.engine.data.batches`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from hpo.engine.data import tensors as data_mod
from hpo.engine.data.batches import ShuffledBatches

__all__ = ["Split", "prepared_splits"]


@dataclass
class Split:
    """A split's model inputs ``x`` and labels ``y`` on the run's device."""

    x: Tensor
    y: Tensor

    def rows(self, start: int, stop: int) -> Tensor:
        """Model inputs of rows ``start:stop`` (evaluation reads the splits in order)."""
        return self.x[start:stop]

    def batches(self, batch_size: int) -> ShuffledBatches:
        """The training batches of this split (an image folder streamed from disk decodes
        them instead: :class:`hpo.engine.data.streamed.StreamedSplit`)."""
        return ShuffledBatches(self.x, self.y, batch_size)


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

    return (
        split(raw.train_images[train_idx], raw.train_labels[train_idx]),
        split(raw.val_images, raw.val_labels) if own_val
        else split(raw.train_images[val_idx], raw.train_labels[val_idx]),
        split(raw.test_images, raw.test_labels),
    )


