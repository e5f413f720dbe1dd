"""Splits of an image folder too large for memory: batches decoded from disk as needed.

A :class:`StreamedSplit` is a ``Split`` whose rows are image files, decoded and prepared
value by value per batch, so a batch holds exactly what the in-memory path gathers;
its ``x`` is an empty tensor telling the loop the row shape, dtype and device.
See docs/design.md#streamed-image-folder-splits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

from hpo.engine.data import tensors as data_mod
from hpo.engine.data.imagefolder import FolderSplit, ImageFolderIndex, decode_images
from hpo.engine.data.splits import Split

__all__ = ["StreamedBatches", "StreamedSplit", "streamed_splits"]


class StreamedSplit(Split):
    """Image files and their labels; rows decoded and prepared on demand."""

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Tensor,
        *,
        dataset: str,
        image_size: int,
        channels: int,
        normalize: bool,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        template = torch.empty((0, channels, image_size, image_size), dtype=dtype, device=device)
        super().__init__(template, labels.to(device))
        self.paths = tuple(paths)
        self._settings = dict(dataset=dataset, normalize=normalize, dtype=dtype, device=device)
        self._size, self._channels = image_size, channels

    def decode_rows(self, paths: Sequence[Path]) -> Tensor:
        """``paths`` decoded and prepared as model inputs (N, C, S, S)."""
        codes = decode_images(paths, image_size=self._size, channels=self._channels)
        return data_mod.prepare_images(codes, **self._settings)

    def rows(self, start: int, stop: int) -> Tensor:
        return self.decode_rows(self.paths[start:stop])

    def batches(self, batch_size: int) -> StreamedBatches:
        return StreamedBatches(self, batch_size)


class StreamedBatches:
    """The :class:`hpo.engine.data.batches.ShuffledBatches` of a streamed split: the same
    batches (rows ``order[start : start + batch_size]``), each decoded when it is reached."""

    def __init__(self, split: StreamedSplit, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.split, self.batch_size = split, batch_size

    def epoch(self, order: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """``(x, y)`` per batch of ``order`` (int64 indices, usually a permutation)."""
        split = self.split
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            x = split.decode_rows([split.paths[i] for i in idx.tolist()])
            yield x, split.y.index_select(0, idx)


def streamed_splits(
    index: ImageFolderIndex,
    *,
    image_size: int,
    channels: int,
    val_size: int,
    train_subset: int | None,
    split_seed: int,
    normalize: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[StreamedSplit, StreamedSplit, StreamedSplit]:
    """Train, validation and test splits of ``index``, with the in-memory path's indices.

    Raises:
        ConfigError: ``val_size`` or ``train_subset`` do not fit the training images.
    """
    own_val = index.val is not None
    train_idx, val_idx = data_mod.split_indices(
        len(index.train), val_size=val_size, train_subset=train_subset, split_seed=split_seed,
        own_validation=own_val,
    )

    def split(files: FolderSplit, idx: Tensor | None = None) -> StreamedSplit:
        paths, labels = files.paths, files.labels
        if idx is not None:
            paths, labels = [paths[i] for i in idx.tolist()], labels[idx]
        return StreamedSplit(
            paths, labels, dataset=index.name, image_size=image_size, channels=channels,
            normalize=normalize, dtype=dtype, device=device,
        )

    val = split(index.val) if index.val is not None else split(index.train, val_idx)
    return split(index.train, train_idx), val, split(index.test)
