"""Tiny dataset files in the official formats, and the checksum registry pointed at them.

The files are built here (no download): a ``cifar-10-python.tar.gz`` with the official
members (pickled dicts of ``data`` uint8 (N, 3072) and ``labels``), SVHN ``.mat`` files
written with ``scipy.io.savemat`` (``X`` (32, 32, 3, N), ``y`` (N, 1) with 10 for the digit
0), and ImageFolder trees of PNG or JPEG files. Each writer returns what a reader must give
back, so tests compare exact values.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import calculate_md5
from torchvision.io import encode_jpeg, encode_png

from hpo.engine.data import archives
from hpo.engine.data.fetch import RemoteFile

CIFAR_TRAIN = [n for n, _ in CIFAR10.train_list]


def _tar_add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def official_pickle(obj: object) -> bytes:
    """``obj`` pickled with the numpy module name the official (numpy 1) files spell,
    ``numpy.core.multiarray``, where numpy 2 writes ``numpy._core.multiarray``."""
    # Protocol 3 spells globals as text lines (and has no frames to resize).
    data = pickle.dumps(obj, protocol=3)
    return data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_cifar10(
    root: Path, per_batch: int = 3, seed: int = 0, batch: object = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``root/cifar-10-python.tar.gz`` with five training batches and a test batch of
    ``per_batch`` random images each; returns (train_x, train_y, test_x, test_y) as the
    reader must give them ((N, 3, 32, 32): row r of a batch is planes R, G, B).

    ``batch``: a replacement object pickled as ``data_batch_1`` (to test bad pickles).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    with tarfile.open(root / CIFAR10.filename, "w:gz") as tar:
        for name in [*CIFAR_TRAIN, "test_batch"]:
            data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
            content = {"batch_label": f"batch {name}", "labels": labels, "data": data,
                       "filenames": [f"img_{i}.png" for i in range(per_batch)]}
            if batch is not None and name == CIFAR_TRAIN[0]:
                payload = batch if isinstance(batch, bytes) else pickle.dumps(batch, protocol=4)
            else:
                payload = official_pickle(content)
            _tar_add(tar, f"{CIFAR10.base_folder}/{name}", payload)
            xs.append(torch.from_numpy(data.copy()).view(-1, 3, 32, 32))
            ys.append(torch.tensor(labels))
        meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch}
        _tar_add(tar, f"{CIFAR10.base_folder}/batches.meta", pickle.dumps(meta, protocol=4))
    return torch.cat(xs[:5]), torch.cat(ys[:5]), xs[5], ys[5]


def write_svhn(root: Path, filename: str, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """An SVHN ``.mat`` file of ``n`` images; returns the (N, 3, 32, 32) images and the
    labels with 10 turned into 0 (every label 1..10 occurs when ``n`` >= 10)."""
    import scipy.io

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)  # (H, W, C, N)
    y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 = digit 0
    scipy.io.savemat(root / filename, {"X": x, "y": y})
    images = torch.stack([torch.from_numpy(x[:, :, :, i].copy()).permute(2, 0, 1)
                          for i in range(n)])
    labels = torch.from_numpy(y.reshape(-1).astype(np.int64) % 10)
    return images, labels


def use_local_checksums(monkeypatch: pytest.MonkeyPatch, name: str, root: Path) -> None:
    """Point ``archives.FILES[name]`` at the MD5 sums of the files written in ``root``
    (same names, no URL: a missing file cannot be downloaded)."""
    files = tuple(
        RemoteFile(f.filename, calculate_md5(root / f.filename), ())
        for f in archives.FILES[name]
    )
    monkeypatch.setitem(archives.FILES, name, files)


def random_image(size: tuple[int, int], channels: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (channels, *size), generator=g, dtype=torch.uint8)


def write_image_folder(
    root: Path,
    classes: dict[str, int],
    *,
    splits: tuple[str, ...] = ("train", "test"),
    size: tuple[int, int] = (8, 8),
    fmt: str = "png",
    seed: int = 0,
) -> dict[str, list[tuple[Path, Tensor, str]]]:
    """``root/<split>/<class>/<i>.<fmt>``, ``classes[c]`` images per class and split, random
    RGB of ``size``; returns per split the (path, encoded image, class) written."""
    written: dict[str, list[tuple[Path, Tensor, str]]] = {}
    k = seed
    for split in splits:
        written[split] = []
        for cls, count in classes.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                img = random_image(size, 3, k)
                k += 1
                data = encode_png(img) if fmt == "png" else encode_jpeg(img, quality=95)
                path = folder / f"{i:03d}.{fmt}"
                path.write_bytes(data.numpy().tobytes())
                written[split].append((path, img, cls))
    return written
