"""CIFAR-10 and SVHN from their official archives, as whole uint8 tensors (N, 3, 32, 32).

:data:`FILES` holds each dataset's file names, URLs and MD5 sums (from torchvision's
class attributes); every file is verified before anything parses it. CIFAR-10's pickles
are read from the archive with an unpickler that resolves only numpy's array names;
SVHN's ``.mat`` files with ``scipy.io.loadmat``. See docs/design.md#cifar-10-and-svhn-archives.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.datasets import CIFAR10, SVHN

from hpo.engine.data.fetch import RemoteFile, find_or_download
from hpo.engine.data.tensors import RawDataset
from hpo.errors import ConfigError, DataError

__all__ = ["FILES", "load_archive", "read_cifar10", "verify_archive"]

logger = logging.getLogger(__name__)


def _svhn(split: str) -> RemoteFile:
    url, filename, md5 = SVHN.split_list[split]
    return RemoteFile(filename, md5, (url,))


# dataset -> (training file(s)..., test file): for CIFAR-10 one archive holds both.
FILES: dict[str, tuple[RemoteFile, ...]] = {
    "cifar10": (RemoteFile(CIFAR10.filename, CIFAR10.tgz_md5, (CIFAR10.url,)),),
    "svhn": (_svhn("train"), _svhn("test")),
    "svhn_extra": (_svhn("extra"), _svhn("test")),
}


def verify_archive(name: str, data_dir: str | os.PathLike | None = None) -> tuple[Path, ...]:
    """Find and checksum ``name``'s files, downloading missing ones into the cache, without
    parsing them.

    Raises:
        ConfigError: ``name`` is not an archive dataset.
        DataError: a file has a wrong checksum, or is missing and cannot be downloaded.
    """
    if name not in FILES:
        raise ConfigError(f"Unknown archive dataset {name!r}. Valid names: {sorted(FILES)}.")
    return tuple(find_or_download(name, FILES[name], data_dir=data_dir))


def load_archive(name: str, data_dir: str | os.PathLike | None = None) -> RawDataset:
    """``name``'s training and test sets, read once per process for the same files.

    Raises:
        ConfigError: ``name`` is not an archive dataset.
        DataError: a file is corrupt, not in the official format, or missing and cannot be
            downloaded.
    """
    return _load(name, verify_archive(name, data_dir))


@functools.lru_cache(maxsize=2)
def _load(name: str, paths: tuple[Path, ...]) -> RawDataset:
    logger.info("loading %s from %s", name, paths[0].parent)
    if name == "cifar10":
        (train_x, train_y), (test_x, test_y) = read_cifar10(paths[0])
    else:
        (train_x, train_y), (test_x, test_y) = (_read_svhn_mat(p) for p in paths)
    return RawDataset(name, train_x, train_y, test_x, test_y)


# --------------------------------------------------------------------------------- CIFAR-10
_CIFAR_TRAIN = tuple(name for name, _ in CIFAR10.train_list)
_CIFAR_TEST = tuple(name for name, _ in CIFAR10.test_list)
# The reconstructor numpy's own ndarray pickles name: taken from numpy's public API instead
# of importing it by the (version-dependent) module name the file spells.
_NDARRAY_RECONSTRUCT = np.empty(0).__reduce__()[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,  # numpy 1 (the files)
    ("numpy._core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,  # numpy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses any other global
    (a pickle can call any importable function: ``os.system`` included)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global '{module}.{name}' is not allowed in a CIFAR-10 batch"
            ) from None


def _unpickle(data: bytes, where: str) -> dict[str, Any]:
    try:
        # latin1: the official files are Python 2 pickles of byte strings.
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:  # any malformed pickle: a bad file, never a bug of ours
        raise DataError(
            f"{where}: not a CIFAR-10 batch ({exc}); delete the archive and download the "
            "official file again."
        ) from exc
    if not isinstance(batch, dict):
        raise DataError(f"{where}: not a CIFAR-10 batch (a {type(batch).__name__}, not a dict).")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _cifar_batch(batch: dict[str, Any], where: str) -> tuple[Tensor, Tensor]:
    x, y = batch.get("data"), batch.get("labels")
    ok = isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2
    ok = ok and x.shape[1] == 3 * 32 * 32 and isinstance(y, list) and len(y) == len(x)
    if not ok:
        raise DataError(
            f"{where}: a CIFAR-10 batch needs 'data' uint8 (N, 3072) and N 'labels'; delete "
            "the archive and download the official file again."
        )
    labels = torch.tensor(y, dtype=torch.int64)
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < 10):
        raise DataError(f"{where}: labels outside 0..9; delete the archive and download it.")
    # Each row is the R, G, B planes of a row-major 32x32 image: channel-first as stored.
    return torch.from_numpy(np.ascontiguousarray(x)).view(-1, 3, 32, 32), labels


def read_cifar10(path: str | os.PathLike) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Read CIFAR-10's python archive (already verified) without extracting it.

    Returns:
        ``((train_images, train_labels), (test_images, test_labels))``: uint8
        (N, 3, 32, 32) and int64 (N,); training is ``data_batch_1..5`` in order.

    Raises:
        DataError: not a gzip tar, a member missing, or a batch not in the official format.
    """
    path = Path(path)
    parts: dict[str, tuple[Tensor, Tensor]] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in _CIFAR_TRAIN + _CIFAR_TEST:
                inside = f"{CIFAR10.base_folder}/{member}"
                try:
                    f = tar.extractfile(inside)
                except KeyError:
                    f = None
                if f is None:
                    raise DataError(
                        f"{path}: no {inside} in the archive; delete it and download the "
                        "official file again."
                    )
                where = f"{path}:{inside}"
                parts[member] = _cifar_batch(_unpickle(f.read(), where), where)
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc}); delete it and download it again.") from exc

    def cat(names: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        return torch.cat([parts[n][0] for n in names]), torch.cat([parts[n][1] for n in names])

    return cat(_CIFAR_TRAIN), cat(_CIFAR_TEST)


# ------------------------------------------------------------------------------------- SVHN
def _read_svhn_mat(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """Read one SVHN ``.mat`` file (already verified).

    Returns:
        uint8 images (N, 3, 32, 32) from ``X`` (32, 32, 3, N), and int64 labels (N,) from
        ``y`` with 10 turned into 0 (SVHN's label for the digit 0).

    Raises:
        DataError: not a MATLAB file, or ``X``/``y`` not in the official format.
    """
    import scipy.io  # only SVHN needs scipy: imported when one is read

    path = Path(path)
    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except (OSError, ValueError, NotImplementedError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); delete it and download it again.") from exc
    x, y = mat.get("X"), mat.get("y")
    ok = isinstance(x, np.ndarray) and x.ndim == 4 and x.shape[:3] == (32, 32, 3)
    ok = ok and x.dtype == np.uint8 and isinstance(y, np.ndarray) and y.size == x.shape[3]
    if not ok:
        raise DataError(
            f"{path}: an SVHN file needs 'X' uint8 (32, 32, 3, N) and N labels 'y'; delete "
            "it and download the official file again."
        )
    labels = torch.from_numpy(y.reshape(-1).astype(np.int64))
    if len(labels) and not (1 <= int(labels.min()) and int(labels.max()) <= 10):
        raise DataError(f"{path}: labels outside 1..10; delete it and download it again.")
    labels[labels == 10] = 0
    # (H, W, C, N) -> (N, C, H, W), as torchvision's SVHN transposes it.
    images = torch.from_numpy(x).permute(3, 2, 0, 1).contiguous()
    return images, labels
