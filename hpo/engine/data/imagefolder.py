"""Bring your own images: torchvision's ImageFolder layout, read into uint8 tensors.

``imagefolder:PATH`` names a folder with ``train/<class>/`` and ``test/<class>/`` (and
optionally ``val/<class>/``). Images are decoded to RGB (or gray) and resized to the run's
``image_size``; within the memory budget (:func:`memory_budget`) once per process into one
tensor, else batch by batch from disk (:mod:`hpo.engine.data.streamed`), with the same
values. A bad layout is a :class:`ConfigError` that says how to fix it.
See docs/design.md#image-folders-layout-decoding-memory-budget.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from hpo.engine.data.tensors import RawDataset
from hpo.errors import ConfigError, DataError

__all__ = [
    "MEMORY_ENV",
    "FolderSplit",
    "ImageFolderIndex",
    "decode_images",
    "fits_in_memory",
    "load_in_memory",
    "memory_budget",
    "scan",
]

logger = logging.getLogger(__name__)

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
MEMORY_ENV = "HPO_IMAGE_MEMORY_GIB"
_DEFAULT_MEMORY_GIB = 4.0
_LAYOUT = "PATH/train/<class>/<image> and PATH/test/<class>/<image> (torchvision's ImageFolder)"


@dataclass(frozen=True, eq=False)
class FolderSplit:
    """The image files of one split and their labels (int64, the class's index)."""

    paths: tuple[Path, ...]
    labels: Tensor

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True, eq=False)
class ImageFolderIndex:
    """What :func:`scan` found: the classes and the files of each split."""

    name: str
    root: Path
    classes: tuple[str, ...]
    train: FolderSplit
    test: FolderSplit
    val: FolderSplit | None

    @property
    def num_images(self) -> int:
        return len(self.train) + len(self.test) + (len(self.val) if self.val else 0)


def scan(name: str, root: str | os.PathLike) -> ImageFolderIndex:
    """List the classes and image files of ``root`` (the ``PATH`` of ``name``), checking
    the layout; cached per process while the folders are unchanged (the modification times
    of the folder, its splits and their class folders are part of the cache key).

    Raises:
        ConfigError: the folder, its ``train/`` or ``test/`` is missing, ``train/`` has no
            class folders or a class without images, or the splits' classes differ.
    """
    root = Path(root).expanduser().resolve()
    return _scan(name, root, _signature(root))


def _signature(root: Path) -> tuple[tuple[str, int], ...]:
    """(folder, mtime) of ``root``, its splits and their class folders: adding or removing
    a file or folder in any of them changes it."""
    folders = [root] + [root / s for s in ("train", "val", "test")]
    folders += [Path(e.path) for f in folders[1:] if f.is_dir() for e in os.scandir(f)
                if e.is_dir()]
    return tuple((str(f), f.stat().st_mtime_ns) for f in folders if f.is_dir())


@functools.lru_cache(maxsize=4)
def _scan(name: str, root: Path, signature: tuple[tuple[str, int], ...]) -> ImageFolderIndex:
    if not root.is_dir():
        raise ConfigError(
            f"dataset {name!r}: the image folder {str(root)!r} does not exist; give the path "
            f"of a folder laid out as {_LAYOUT}."
        )
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise ConfigError(
                f"dataset {name!r}: {str(root)!r} has no {split}/ folder; lay it out as "
                f"{_LAYOUT}."
            )
    classes = _class_folders(root / "train")
    if not classes:
        raise ConfigError(
            f"dataset {name!r}: {str(root / 'train')!r} has no class folders; put each "
            f"class's images in its own folder, {_LAYOUT}."
        )
    splits = {"train": _files(name, root / "train", classes, require_each=True)}
    for split in ("test", "val"):
        folder = root / split
        if split == "val" and not folder.is_dir():
            continue
        found = _class_folders(folder)
        if found != classes:
            missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
            raise ConfigError(
                f"dataset {name!r}: {split}/ has different classes from train/ (missing "
                f"{missing}, extra {extra}); give {split}/ exactly the class folders of "
                "train/."
            )
        splits[split] = _files(name, folder, classes, require_each=False)
    logger.info("%s: %d classes, %s images", name, len(classes),
                {k: len(v) for k, v in splits.items()})
    return ImageFolderIndex(name, root, classes, splits["train"], splits["test"],
                            splits.get("val"))


def _class_folders(folder: Path) -> tuple[str, ...]:
    # As torchvision's find_classes: the sorted names of the sub-folders.
    return tuple(sorted(e.name for e in os.scandir(folder) if e.is_dir()))


def _files(name: str, folder: Path, classes: Sequence[str], require_each: bool) -> FolderSplit:
    paths: list[Path] = []
    labels: list[int] = []
    for index, cls in enumerate(classes):
        found = [
            Path(dirpath) / f
            for dirpath, _, files in sorted(os.walk(folder / cls, followlinks=True))
            for f in sorted(files)
            if f.lower().endswith(_IMAGE_EXTENSIONS)
        ]
        if require_each and not found:
            raise ConfigError(
                f"dataset {name!r}: {str(folder / cls)!r} holds no images "
                f"({', '.join(_IMAGE_EXTENSIONS)}); add images to it or remove the folder."
            )
        paths += found
        labels += [index] * len(found)
    if not paths:
        raise ConfigError(
            f"dataset {name!r}: {str(folder)!r} holds no images ({', '.join(_IMAGE_EXTENSIONS)}); "
            "add images to its class folders."
        )
    return FolderSplit(tuple(paths), torch.tensor(labels, dtype=torch.int64))


def decode_images(
    paths: Sequence[Path], *, image_size: int, channels: int, out: Tensor | None = None
) -> Tensor:
    """Decode ``paths`` into uint8 (N, channels, image_size, image_size), in order.

    Raises:
        DataError: a file cannot be decoded.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    if out is None:
        out = torch.empty((len(paths), channels, image_size, image_size), dtype=torch.uint8)
    for i, path in enumerate(paths):
        try:
            # The bytes as a tensor: decode_image takes a path only from torchvision 0.20.
            data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
            img = decode_image(data, mode=mode)
        except (RuntimeError, OSError, ValueError) as exc:
            raise DataError(
                f"{path}: cannot decode the image ({exc}); replace or remove the file."
            ) from exc
        if img.shape[-2:] != (image_size, image_size):
            img = TF.resize(img, [image_size, image_size], antialias=True)
        out[i] = img
    return out


def memory_budget() -> int:
    """Bytes an image folder may take in memory: ``HPO_IMAGE_MEMORY_GIB`` (GiB, default 4).

    Raises:
        ConfigError: the variable is not a number >= 0.
    """
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if not raw:
        return int(_DEFAULT_MEMORY_GIB * 2**30)
    try:
        gib = float(raw)
    except ValueError:
        gib = math.nan
    if not (math.isfinite(gib) and gib >= 0):
        raise ConfigError(
            f"Invalid {MEMORY_ENV}={raw!r}: it must be a number of GiB >= 0 (0: always decode "
            f"from disk); unset it for the default {_DEFAULT_MEMORY_GIB:g}."
        )
    return int(gib * 2**30)


def fits_in_memory(
    index: ImageFolderIndex, *, image_size: int, channels: int, itemsize: int
) -> bool:
    """Whether the decoded images (1 byte a value) and their prepared copy (``itemsize``
    bytes a value: 4 in float32) of every split fit in :func:`memory_budget`."""
    values = index.num_images * channels * image_size * image_size
    return values * (1 + itemsize) <= memory_budget()


def load_in_memory(index: ImageFolderIndex, *, image_size: int, channels: int) -> RawDataset:
    """Every split decoded into uint8 tensors, once per process for the same settings."""
    return _load(index, image_size, channels)


@functools.lru_cache(maxsize=2)
def _load(index: ImageFolderIndex, image_size: int, channels: int) -> RawDataset:
    logger.info("decoding %d images of %s at %dx%d", index.num_images, index.name,
                image_size, image_size)

    def decode(split: FolderSplit) -> Tensor:
        return decode_images(split.paths, image_size=image_size, channels=channels)

    val = index.val
    return RawDataset(
        index.name, decode(index.train), index.train.labels, decode(index.test),
        index.test.labels, decode(val) if val else None, val.labels if val else None,
        index.classes,
    )
