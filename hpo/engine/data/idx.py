"""MNIST and Fashion-MNIST from their official IDX ``.gz`` files: find, verify, read.

The files are read directly (no torchvision dataset object, which would unpack into its
folder: the data folder may be read-only). File names, MD5 sums and mirrors come from
torchvision's own metadata (``MNIST.resources`` / ``.mirrors``); files are found or
downloaded by :mod:`hpo.engine.data.fetch`, in torchvision's layout
``<root>/MNIST/raw/<file>.gz``.
"""

from __future__ import annotations

import functools
import gzip
import logging
import math
import os
import zlib
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets import MNIST, FashionMNIST

from hpo.engine.data.fetch import RemoteFile, find_or_download
from hpo.engine.data.registry import DATASET_INFO
from hpo.engine.data.tensors import RawDataset
from hpo.errors import ConfigError, DataError

__all__ = ["MEAN_STD", "load_raw", "read_idx", "verify_files"]

logger = logging.getLogger(__name__)

# Pixel mean and std of the gray datasets' training images after scaling to [0, 1] (every
# dataset's per-channel constants are in hpo.engine.data.registry).
MEAN_STD = {
    n: (DATASET_INFO[n].mean[0], DATASET_INFO[n].std[0]) for n in ("mnist", "fashion_mnist")
}

# The torchvision class supplies resources, mirrors, and (its name) the folder name.
_TORCHVISION = {"mnist": MNIST, "fashion_mnist": FashionMNIST}
_IDX_UINT8 = 0x08
_CHUNK = 1 << 20
_SPLITS = ("train-images", "train-labels", "t10k-images", "t10k-labels")


def read_idx(path: str | os.PathLike) -> Tensor:
    """Read a gzip IDX file of unsigned bytes (magic 0x00000801 labels, 0x00000803 images)
    into a uint8 tensor shaped by the header's big-endian dimensions.

    Raises:
        DataError: the file is not gzip, has a bad magic number, or is truncated or too long.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:3] != b"\x00\x00" + bytes([_IDX_UINT8]) or magic[3] == 0:
                raise DataError(
                    f"{path}: not an IDX uint8 file (magic {magic.hex() or 'missing'}, expected "
                    "00000801 or 00000803); delete it and download the official file again."
                )
            header = f.read(4 * magic[3])
            if len(header) < 4 * magic[3]:
                raise DataError(f"{path}: IDX header truncated; delete it and download it again.")
            dims = [int.from_bytes(header[i : i + 4], "big") for i in range(0, len(header), 4)]
            buf = bytearray(math.prod(dims))
            view, filled = memoryview(buf), 0
            # Chunked, because GzipFile.readinto reads into a temporary bytes object first.
            while filled < len(buf) and (got := f.readinto(view[filled : filled + _CHUNK])):
                filled += got
            # Reading past the end also makes gzip check the stream's CRC and length.
            extra = f.read(1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc}); delete it and download it again.") from exc
    if filled < len(buf) or extra:
        raise DataError(
            f"{path}: {'fewer' if filled < len(buf) else 'more'} data bytes than the header's "
            f"dimensions {dims} need; delete it and download the official file again."
        )
    # frombuffer refuses an empty buffer
    flat = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.zeros(0, dtype=torch.uint8)
    return flat.view(dims)


def _resolve_files(name: str, data_dir: str | os.PathLike | None) -> tuple[Path, ...]:
    """Paths of the four verified files, downloading the missing ones into the cache
    (:func:`hpo.engine.data.fetch.find_or_download`, in torchvision's ``<root>/MNIST/raw``)."""
    cls = _TORCHVISION[name]
    files = [RemoteFile(f, md5, tuple(m + f for m in cls.mirrors)) for f, md5 in cls.resources]
    paths = find_or_download(name, files, data_dir=data_dir, subfolder=f"{cls.__name__}/raw")
    by_split = {p.name.split("-idx")[0]: p for p in paths}
    return tuple(by_split[s] for s in _SPLITS)


def load_raw(name: str, data_dir: str | os.PathLike | None = None) -> RawDataset:
    """Load a whole dataset as tensors, once per process for the same files.

    Args:
        name: ``mnist`` or ``fashion_mnist``.
        data_dir: folder holding ``MNIST/raw/*.gz`` / ``FashionMNIST/raw/*.gz`` (or the files
            directly); default the ``HPO_DATA_DIR`` environment variable. Never written to.

    Returns:
        The cached :class:`RawDataset` (the same object for repeated calls).

    Raises:
        ConfigError: unknown dataset name.
        DataError: a file is corrupt, or missing and cannot be downloaded.
    """
    return _load_files(name, verify_files(name, data_dir))


def verify_files(name: str, data_dir: str | os.PathLike | None = None) -> tuple[Path, ...]:
    """Find and checksum a dataset's four files, downloading missing ones into the cache,
    without reading them: lets a caller fail (or download once) before any work starts.

    Returns:
        The paths of the train images, train labels, test images and test labels.

    Raises:
        ConfigError: unknown dataset name.
        DataError: a file is corrupt, or missing and cannot be downloaded.
    """
    if name not in _TORCHVISION:
        raise ConfigError(f"Unknown dataset {name!r}. Valid names: {sorted(_TORCHVISION)}.")
    return _resolve_files(name, data_dir)


@functools.lru_cache(maxsize=4)
def _load_files(name: str, paths: tuple[Path, ...]) -> RawDataset:
    logger.info("loading %s from %s", name, paths[0].parent)
    train_x, train_y, test_x, test_y = (read_idx(p) for p in paths)
    for images, labels, path in ((train_x, train_y, paths[0]), (test_x, test_y, paths[2])):
        if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
            raise DataError(
                f"{path}: shape {tuple(images.shape)} does not fit labels "
                f"{tuple(labels.shape)}; delete the files and download them again."
            )
    return RawDataset(name, train_x, train_y.long(), test_x, test_y.long())


