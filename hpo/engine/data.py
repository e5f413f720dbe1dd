"""MNIST and Fashion-MNIST as whole uint8 tensors: find, verify, download, read, split, shape.

The official IDX ``.gz`` files are read directly (no torchvision dataset object, which would
unpack into its folder: the data folder may be read-only). File names, MD5 sums and mirrors
come from torchvision's own metadata (``MNIST.resources`` / ``.mirrors``). Files are looked
up in the folder given by ``data_dir`` or ``HPO_DATA_DIR``, then in a writable cache
(``HPO_CACHE_DIR`` or ``~/.cache/reluprime-hpo/datasets``) where missing files are downloaded.
Both use torchvision's layout, ``<root>/MNIST/raw/<file>.gz``.
"""

from __future__ import annotations

import functools
import gzip
import http.client
import logging
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.datasets import MNIST, FashionMNIST
from torchvision.datasets.utils import download_url

from hpo.engine.datasets import DATASET_INFO, dataset_info
from hpo.engine.fetch import DOWNLOAD_TIMEOUT_S as _DOWNLOAD_TIMEOUT_S
from hpo.engine.fetch import cache_dir as _cache_dir
from hpo.engine.fetch import data_root as _data_dir
from hpo.engine.fetch import socket_timeout as _socket_timeout
from hpo.engine.fetch import verify_md5 as _verify_md5
from hpo.errors import ConfigError, DataError

__all__ = [
    "MEAN_STD",
    "RawDataset",
    "gather_rows",
    "load_raw",
    "prepare_images",
    "read_idx",
    "shape_batch",
    "split_indices",
    "verify_files",
]

logger = logging.getLogger(__name__)

# Pixel mean and std of the gray datasets' training images after scaling to [0, 1] (every
# dataset's per-channel constants are in hpo.engine.datasets).
MEAN_STD = {
    n: (DATASET_INFO[n].mean[0], DATASET_INFO[n].std[0]) for n in ("mnist", "fashion_mnist")
}

# The torchvision class supplies resources, mirrors, and (its name) the folder name.
_TORCHVISION = {"mnist": MNIST, "fashion_mnist": FashionMNIST}
_IDX_UINT8 = 0x08
_CHUNK = 1 << 20
_SPLITS = ("train-images", "train-labels", "t10k-images", "t10k-labels")


@dataclass(frozen=True, eq=False)
class RawDataset:
    """The official training and test sets as shared tensors; do not modify them in place.

    Attributes:
        name: dataset name (a key of :func:`hpo.engine.datasets.dataset_info`).
        train_images: uint8, (N, H, W) for the IDX datasets (MNIST: (60000, 28, 28)), else
            (N, C, H, W), channels first.
        train_labels: int64, shape (N,).
        test_images: uint8, as ``train_images``.
        test_labels: int64.
        val_images, val_labels: a validation set of its own (an image folder's ``val/``);
            ``None``: validation is split off the training set.
        classes: class names, label ``i`` is ``classes[i]`` (empty: the labels are the names).
    """

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    val_images: Tensor | None = None
    val_labels: Tensor | None = None
    classes: tuple[str, ...] = ()


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


def _download(name: str, filenames: list[str], raw: Path, data_dir: Path | None) -> None:
    """Download ``filenames`` into the cache folder ``raw``, trying each mirror in order."""
    cls = _TORCHVISION[name]
    md5s = dict(cls.resources)
    errors: list[str] = []
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        errors.append(f"cannot create {raw}: {exc}")
    for filename in filenames if not errors else []:
        # A private temporary name, renamed only once complete and verified, so that an
        # interrupted download or a concurrent worker never leaves a half file in place.
        tmp = raw / f".{filename}.{os.getpid()}.part"
        for mirror in cls.mirrors:
            # Attempts and failed mirrors are debug output: download_url shows a progress
            # bar, and when every mirror fails the DataError below names the last failure.
            logger.debug("downloading %s from %s into %s", filename, mirror, raw)
            try:
                with _socket_timeout(_DOWNLOAD_TIMEOUT_S):
                    download_url(mirror + filename, raw, tmp.name, md5s[filename])
                os.replace(tmp, raw / filename)
                logger.info("downloaded %s from %s into %s", filename, mirror, raw)
                break
            except (OSError, RuntimeError, ValueError, http.client.HTTPException) as exc:
                logger.debug("download of %s from %s failed: %s", filename, mirror, exc)
                errors.append(f"{mirror}{filename}: {exc}")
            finally:
                tmp.unlink(missing_ok=True)
        else:
            break  # every mirror failed: most likely offline, so do not try the other files
    missing = [f for f in filenames if not (raw / f).is_file()]
    if missing:
        folder = cls.__name__
        where = (
            f"{data_dir / folder / 'raw'} (the folder given by --data-dir/HPO_DATA_DIR)"
            if data_dir is not None
            else f"<DIR>/{folder}/raw/ and pass --data-dir DIR (or set HPO_DATA_DIR=DIR)"
        )
        raise DataError(
            f"dataset {name!r}: missing {', '.join(missing)} and download failed "
            f"({errors[-1] if errors else 'unknown error'}); put the official files in {where} "
            f"or in the cache {raw} (set by HPO_CACHE_DIR); fetch them from "
            f"{' or '.join(m + '<file>' for m in cls.mirrors)}."
        )


def _resolve_files(name: str, data_dir: str | os.PathLike | None) -> tuple[Path, ...]:
    """Paths of the four verified files, downloading the missing ones into the cache."""
    cls = _TORCHVISION[name]
    root = _data_dir(data_dir)
    cache_raw = _cache_dir() / cls.__name__ / "raw"
    candidates = [cache_raw]
    if root is not None:
        if not root.is_dir():
            # A typo in --data-dir must not silently turn into a download elsewhere.
            raise DataError(
                f"data dir {str(root)!r} does not exist; point --data-dir / HPO_DATA_DIR at the "
                f"folder holding {cls.__name__}/raw/*.gz, or unset it to use the cache "
                f"{cache_raw} (files are downloaded there when missing)."
            )
        candidates = [root / cls.__name__ / "raw", root, cache_raw]
    md5s = dict(cls.resources)
    found: dict[str, Path] = {}
    for filename in md5s:
        for folder in candidates:
            if (folder / filename).is_file():
                found[filename] = folder / filename
                break
    # Present files are checked before any download, so a corrupt file fails fast offline.
    for filename, path in found.items():
        _verify_md5(path, md5s[filename])
    missing = [f for f in md5s if f not in found]
    if missing:
        # download_url checks the MD5 of what it fetched before it is renamed into place.
        _download(name, missing, cache_raw, root)
        found.update({f: cache_raw / f for f in missing})
    by_split = {f.split("-idx")[0]: p for f, p in found.items()}
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


def split_indices(
    n: int,
    *,
    val_size: int,
    train_subset: int | None,
    split_seed: int,
    own_validation: bool = False,
) -> tuple[Tensor, Tensor]:
    """Split ``n`` official training images into training and validation indices.

    A seeded permutation of ``range(n)``: validation is its first ``val_size`` entries,
    training the rest, cut to its first ``train_subset`` entries when given (so a smaller
    subset is a prefix of a larger one). The official test set is never part of it.

    Args:
        own_validation: the dataset has a validation set of its own (an image folder's
            ``val/``): ``val_size`` is not used, training is the permutation's first
            ``train_subset`` entries (all when ``None``) and the validation indices are empty.

    Returns:
        ``(train_indices, val_indices)``, int64 tensors.

    Raises:
        ConfigError: ``val_size`` or ``train_subset`` do not fit in ``n``.
    """
    if own_validation:
        if train_subset is not None and not 1 <= train_subset <= n:
            raise ConfigError(
                f"train_subset={train_subset} is more than the {n} training images; "
                f"allowed 1 to {n}."
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
        return (perm if train_subset is None else perm[:train_subset]), perm[:0]
    if not 1 <= val_size < n:
        raise ConfigError(
            f"val_size={val_size} does not fit {n} training images; allowed 1 to {n - 1}."
        )
    if train_subset is not None and not 1 <= train_subset <= n - val_size:
        raise ConfigError(
            f"train_subset={train_subset} with val_size={val_size} needs more than the {n} "
            f"training images; allowed train_subset: 1 to {n - val_size} (or lower val_size)."
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    train = perm[val_size:]
    return (train if train_subset is None else train[:train_subset]), perm[:val_size]


def prepare_images(
    images_uint8: Tensor,
    *,
    dataset: str,
    normalize: bool,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
) -> Tensor:
    """Turn uint8 images (N, H, W) or (N, C, H, W) into model input (N, C, H, W) of ``dtype``.

    Scaling and standardisation run in float32 (float64 for float64) and the result is cast
    once at the end, so every precision sees the same input rounded once.

    Args:
        images_uint8: uint8 tensor (N, H, W) or (N, C, H, W).
        dataset: dataset name, picks its per-channel constants
            (:class:`hpo.engine.datasets.DatasetInfo`).
        normalize: standardise with the dataset's mean and std, else keep [0, 1].
        dtype: floating dtype of the result.
        device: where the result lives (the uint8 tensor is moved first: 4x less to copy).
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() not in (3, 4):
        raise ValueError(
            f"expected uint8 images (N, H, W), got {images_uint8.dtype} {tuple(images_uint8.shape)}"
        )
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    channels = 1 if images_uint8.dim() == 3 else images_uint8.shape[1]
    stats = dataset_info(dataset).mean_std(channels) if normalize else None
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    x = images_uint8.to(device) if device is not None else images_uint8
    x = x.to(compute).div_(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if stats is not None:
        # Per channel with Python floats: for one channel exactly the arithmetic of a
        # whole-tensor sub_/div_ by scalars.
        for c, (mean, std) in enumerate(zip(*stats)):
            x[:, c].sub_(mean).div_(std)
    return x.to(dtype)


def gather_rows(x: Tensor, idx: Tensor, out: Tensor | None = None) -> Tensor:
    """``x[idx]`` along the first dimension, as fast as CPUs allow.

    ``index_select`` on the flattened rows copies each row in one piece; on the 4-D image
    tensor it was 4x slower (and ``x[idx]`` 20x), which made the gather a large part of a
    small net's step. ``out``: a contiguous buffer with at least ``len(idx)`` rows of ``x``'s
    shape and dtype, reused from batch to batch: a fresh 400 KB batch is a fresh ``mmap``
    whose pages fault in on the first write, and with two threads that made the gather
    about 1.5x slower. The result is then a view of ``out``.
    """
    flat = x.reshape(x.shape[0], -1)
    if out is None:
        return flat.index_select(0, idx).view(len(idx), *x.shape[1:])
    rows = out[: len(idx)]
    torch.index_select(flat, 0, idx, out=rows.view(len(idx), -1))
    return rows


def shape_batch(x: Tensor, *, channels: int, image_size: int) -> Tensor:
    """Fit a (N, C, H, W) batch to a model's input channels and size.

    Resizes with bilinear interpolation (in float32 for float16/bfloat16, cast back), then
    expands the gray channel to 3 as a view (no copy). Returns ``x`` itself when nothing
    changes.
    """
    if channels not in (1, 3) or x.dim() != 4 or x.shape[1] not in (1, channels):
        raise ValueError(f"cannot shape {tuple(x.shape)} to {channels} channels")
    if x.shape[-2:] != (image_size, image_size):
        low = x.dtype in (torch.float16, torch.bfloat16)
        y = F.interpolate(
            x.float() if low else x,
            size=(image_size, image_size),
            mode="bilinear",
            align_corners=False,
        )
        x = y.to(x.dtype) if low else y
    if x.shape[1] != channels:
        x = x.expand(-1, channels, -1, -1)
    return x
