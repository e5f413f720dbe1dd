"""Any dataset by name: verify its files, or load it into a run's train/val/test splits.

The one place that knows which module reads which dataset (:mod:`hpo.engine.data.registry` says
what each name is): the IDX files of MNIST and Fashion-MNIST (:mod:`hpo.engine.data.tensors`), the
archives of CIFAR-10 and SVHN (:mod:`hpo.engine.data.archives`), and image folders
(:mod:`hpo.engine.data.imagefolder`, in memory or streamed from disk by
:mod:`hpo.engine.data.streamed`). Everything in memory is a
:class:`~hpo.engine.data.tensors.RawDataset`
of uint8 images, turned into prepared splits by :func:`hpo.engine.data.splits.prepared_splits`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from hpo.engine.data import archives, idx, imagefolder
from hpo.engine.data import tensors as data_mod
from hpo.engine.data.registry import dataset_info, imagefolder_path
from hpo.engine.data.splits import Split, prepared_splits
from hpo.engine.data.streamed import streamed_splits
from hpo.engine.spec import TrainSpec

__all__ = ["LoadedSplits", "load_raw", "load_splits", "num_classes", "verify_dataset"]

logger = logging.getLogger(__name__)

_IDX = ("mnist", "fashion_mnist")


@dataclass(frozen=True)
class LoadedSplits:
    """A run's splits and what the model needs to know of the labels."""

    train: Split
    val: Split
    test: Split
    num_classes: int
    streamed: bool = False  # an image folder decoded batch by batch from disk


def verify_dataset(name: str, data_dir: str | os.PathLike | None = None) -> None:
    """Check that ``name`` can be loaded, without reading its images: archives are found
    and checksummed (missing ones downloaded into the cache), an image folder's layout and
    classes are checked.

    Raises:
        ConfigError: an unknown name, or an image folder with a bad layout.
        DataError: a file has a wrong checksum, or is missing and cannot be downloaded.
    """
    dataset_info(name)  # unknown names fail here, naming the valid ones
    path = imagefolder_path(name)
    if path is not None:
        imagefolder.scan(name, path)
    elif name in _IDX:
        idx.verify_files(name, data_dir)
    else:
        archives.verify_archive(name, data_dir)


def num_classes(name: str, data_dir: str | os.PathLike | None = None) -> int:
    """Classes of ``name``: from the registry, or an image folder's ``train/`` folders."""
    path = imagefolder_path(name)
    if path is not None:
        return len(imagefolder.scan(name, path).classes)
    known = dataset_info(name).num_classes
    if known is None:
        raise ValueError(f"the registry has no number of classes for {name!r}")
    return known


def load_raw(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
    channels: int = 3,
) -> data_mod.RawDataset:
    """The whole dataset as uint8 tensors, cached per process.

    Args:
        name: a registered name or ``imagefolder:PATH``.
        data_dir: the read-only data folder (default ``HPO_DATA_DIR``; not used by image
            folders, whose path is in the name).
        image_size, channels: what an image folder is decoded to (its images have no
            common size); the other datasets keep their stored size and channels.

    Raises:
        ConfigError: an unknown name, or an image folder with a bad layout.
        DataError: a file is corrupt, or missing and cannot be downloaded.
    """
    dataset_info(name)
    path = imagefolder_path(name)
    if path is not None:
        index = imagefolder.scan(name, path)
        size = image_size or TrainSpec(dataset=name).resolved_image_size
        return imagefolder.load_in_memory(index, image_size=size, channels=channels)
    if name in _IDX:
        return idx.load_raw(name, data_dir)
    return archives.load_archive(name, data_dir)


def load_splits(
    spec: TrainSpec,
    data_dir: str | os.PathLike | None,
    dtype: torch.dtype,
    device: torch.device,
) -> LoadedSplits:
    """``spec``'s train, validation and test splits of ``dtype`` on ``device``.

    An image folder is decoded at ``spec``'s image size and channels, into memory when it
    fits :func:`hpo.engine.data.imagefolder.memory_budget`, else batch by batch from disk.

    Raises:
        ConfigError: an unknown name, a bad image folder, or ``val_size``/``train_subset``
            larger than the data.
        DataError: a file is corrupt, or missing and cannot be downloaded.
    """
    name = spec.dataset
    path = imagefolder_path(name)
    if path is not None:
        index = imagefolder.scan(name, path)
        size, channels = spec.resolved_image_size, spec.resolved_channels
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not imagefolder.fits_in_memory(index, image_size=size, channels=channels,
                                          itemsize=itemsize):
            logger.info("%s: %d images do not fit %s; decoding batches from disk", name,
                        index.num_images, imagefolder.MEMORY_ENV)
            train, val, test = streamed_splits(
                index, image_size=size, channels=channels, val_size=spec.val_size,
                train_subset=spec.train_subset, split_seed=spec.split_seed,
                normalize=spec.normalize, dtype=dtype, device=device,
            )
            return LoadedSplits(train, val, test, len(index.classes), streamed=True)
        raw = imagefolder.load_in_memory(index, image_size=size, channels=channels)
    else:
        raw = load_raw(name, data_dir)
    train, val, test = prepared_splits(
        raw, spec.val_size, spec.train_subset, spec.split_seed, spec.normalize, dtype, device,
    )
    return LoadedSplits(train, val, test, num_classes(name, data_dir))
