"""Tests for hpo.engine.data.idx and .tensors: IDX parsing, checksums, download, splits, shape."""

from __future__ import annotations

import gzip
import os
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.datasets.utils import calculate_md5

from hpo.engine.data import fetch
from hpo.engine.data import idx as data
from hpo.engine.data.idx import MEAN_STD, load_raw, read_idx
from hpo.engine.data.tensors import gather_rows, prepare_images, shape_batch, split_indices
from hpo.errors import ConfigError, DataError

MNIST_FILES = [f for f, _ in data.MNIST.resources]
REAL_DIR = os.environ.get("HPO_DATA_DIR")
needs_real_data = pytest.mark.skipif(not REAL_DIR, reason="HPO_DATA_DIR is not set")


def write_idx(path: Path, payload: bytes, dims: list[int], magic: bytes | None = None) -> Path:
    """Write a gzip IDX file: magic 0x0000 08 <ndim>, big-endian dims, then the bytes."""
    magic = magic if magic is not None else bytes([0, 0, 0x08, len(dims)])
    header = magic + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(gzip.compress(header + payload))
    return path


def listing(root: str | Path) -> list[tuple[str, int, int]]:
    return sorted(
        (os.path.join(d, f), os.stat(os.path.join(d, f)).st_size,
         os.stat(os.path.join(d, f)).st_mtime_ns)
        for d, _, files in os.walk(root)
        for f in files
    )


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """A fresh cache folder and a download function that fails like a machine offline."""
    calls: list[str] = []

    def fail(url, root, filename=None, md5=None):
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HPO_DATA_DIR", raising=False)
    monkeypatch.setattr(fetch, "download_url", fail)
    return calls


# -- IDX parser ------------------------------------------------------------------------------


def test_read_idx_images_and_labels(tmp_path):
    pixels = bytes(range(2 * 3 * 4))
    images = read_idx(write_idx(tmp_path / "i.gz", pixels, [2, 3, 4]))
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 4)
    assert images[1, 2, 3].item() == 23 and images.flatten().tolist() == list(pixels)
    labels = read_idx(write_idx(tmp_path / "l.gz", bytes([7, 0, 9]), [3]))
    assert labels.tolist() == [7, 0, 9]


def test_read_idx_bad_magic(tmp_path):
    path = write_idx(tmp_path / "bad.gz", bytes(4), [4], magic=b"\x00\x00\x0d\x01")  # float32
    with pytest.raises(DataError, match=r"bad\.gz.*magic 00000d01"):
        read_idx(path)


@pytest.mark.parametrize("cut", ["payload", "gzip", "extra"])
def test_read_idx_wrong_size(tmp_path, cut):
    path = tmp_path / "t.gz"
    if cut == "payload":  # header promises 2x2x2 bytes, file holds 5
        write_idx(path, bytes(5), [2, 2, 2])
    elif cut == "extra":
        write_idx(path, bytes(9), [2, 2, 2])
    else:  # the gzip stream itself stops in the middle
        write_idx(path, bytes(range(200)), [200])
        path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match=r"t\.gz"):
        read_idx(path)


# -- files, checksums, downloads -------------------------------------------------------------


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ConfigError, match=r"cifar10.*fashion_mnist.*mnist"):
        load_raw("cifar10")


def test_bad_checksum_names_file_md5s_and_fix(tmp_path, offline):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    bad = write_idx(raw / "train-labels-idx1-ubyte.gz", bytes(3), [3])
    with pytest.raises(DataError) as info:
        load_raw("mnist", data_dir=tmp_path / "data")
    msg = str(info.value)
    assert str(bad) in msg and "md5" in msg and "d53e105ee54ea40749a09fcbcd1e9432" in msg
    assert calculate_md5(bad) in msg and "delete" in msg
    assert offline == []  # failed before any download


def test_offline_error_says_what_to_put_where(tmp_path, offline):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with pytest.raises(DataError) as info:
        load_raw("mnist", data_dir=data_dir)
    msg = str(info.value)
    cache_raw = tmp_path / "cache" / "MNIST" / "raw"
    for name in MNIST_FILES:
        assert name in msg
    assert str(data_dir / "MNIST" / "raw") in msg and str(cache_raw) in msg
    assert data.MNIST.mirrors[0] in msg and "\n" not in msg
    # every mirror tried in order for the first file, then no more network attempts
    assert offline == [m + MNIST_FILES[0] for m in data.MNIST.mirrors]
    assert list(cache_raw.iterdir()) == []  # no half-written file left behind


def test_offline_without_data_dir_names_the_flag(offline):
    with pytest.raises(DataError, match=r"FashionMNIST/raw.*--data-dir.*HPO_DATA_DIR"):
        load_raw("fashion_mnist")


@needs_real_data
def test_download_to_temp_then_cache_then_no_network(tmp_path, monkeypatch, offline):
    """The first mirror fails, the second 'serves' the real file; later loads stay offline."""
    seen: list[tuple[str, str]] = []

    def fake_download(url, root, filename=None, md5=None):
        seen.append((url, filename))
        if url.startswith(data.MNIST.mirrors[0]):
            raise urllib.error.URLError("mirror down")
        shutil.copy(Path(REAL_DIR, "MNIST", "raw", url.rsplit("/", 1)[1]), Path(root, filename))

    monkeypatch.setattr(fetch, "download_url", fake_download)
    (tmp_path / "empty").mkdir()
    paths = data._resolve_files("mnist", tmp_path / "empty")
    cache_raw = tmp_path / "cache" / "MNIST" / "raw"
    assert sorted(p.name for p in cache_raw.iterdir()) == sorted(MNIST_FILES)
    assert all(p.parent == cache_raw for p in paths)
    assert all(f.startswith(".") and f.endswith(".part") for _, f in seen)
    assert len(seen) == 2 * len(MNIST_FILES)

    def no_network(*args, **kwargs):
        raise AssertionError("the cached files must be used without a download")

    monkeypatch.setattr(fetch, "download_url", no_network)
    assert data._resolve_files("mnist", None) == paths


@needs_real_data
def test_files_directly_in_root_are_found(tmp_path):
    for name in MNIST_FILES:
        (tmp_path / name).symlink_to(Path(REAL_DIR, "MNIST", "raw", name))
    paths = data._resolve_files("mnist", tmp_path)
    assert [p.parent for p in paths] == [tmp_path] * 4
    assert [p.name for p in paths] == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]


@needs_real_data
def test_load_real_mnist_cached_and_read_only():
    before = listing(REAL_DIR)
    ds = load_raw("mnist")
    assert ds.train_images.shape == (60000, 28, 28) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (10000, 28, 28) and ds.test_images.dtype == torch.uint8
    assert ds.train_labels.dtype == torch.int64 and ds.test_labels.shape == (10000,)
    assert torch.bincount(ds.train_labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949
    ]
    assert torch.bincount(ds.test_labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009
    ]
    assert load_raw("mnist") is ds
    assert load_raw("mnist", data_dir=REAL_DIR) is ds
    assert listing(REAL_DIR) == before


@needs_real_data
def test_load_real_fashion_mnist():
    ds = load_raw("fashion_mnist")
    assert ds.train_images.shape == (60000, 28, 28)
    assert torch.bincount(ds.train_labels).tolist() == [6000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    mean = ds.train_images.double().div(255).mean().item()
    assert mean == pytest.approx(MEAN_STD["fashion_mnist"][0], abs=1e-3)


# -- splits ----------------------------------------------------------------------------------


def test_split_deterministic_disjoint_and_prefix():
    train, val = split_indices(100, val_size=20, train_subset=None, split_seed=3)
    again_train, again_val = split_indices(100, val_size=20, train_subset=None, split_seed=3)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert len(train) == 80 and len(val) == 20
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    other_train, other_val = split_indices(100, val_size=20, train_subset=None, split_seed=4)
    assert not torch.equal(val, other_val)
    sub_train, sub_val = split_indices(100, val_size=20, train_subset=30, split_seed=3)
    assert torch.equal(sub_val, val) and torch.equal(sub_train, train[:30])
    full, _ = split_indices(100, val_size=20, train_subset=80, split_seed=3)
    assert torch.equal(full, train)


def test_split_errors_name_the_limits():
    with pytest.raises(ConfigError, match=r"val_size=100 .*100 .*1 to 99"):
        split_indices(100, val_size=100, train_subset=None, split_seed=0)
    with pytest.raises(ConfigError, match=r"train_subset=81 .*val_size=20.*1 to 80"):
        split_indices(100, val_size=20, train_subset=81, split_seed=0)


# -- tensors ---------------------------------------------------------------------------------


def test_prepare_images_scaling_and_normalization():
    images = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)
    plain = prepare_images(images, dataset="mnist", normalize=False, dtype=torch.float32)
    assert plain.shape == (1, 1, 2, 2) and plain.dtype == torch.float32
    assert plain.flatten().tolist() == pytest.approx([0.0, 1.0, 0.2, 0.4])
    mean, std = MEAN_STD["mnist"]
    norm = prepare_images(images, dataset="mnist", normalize=True, dtype=torch.float64)
    assert norm.dtype == torch.float64
    expected = (images.double() / 255 - mean) / std
    assert torch.allclose(norm[:, 0], expected, rtol=0, atol=1e-15)
    # lower precisions get the float32 result rounded once
    ref = prepare_images(images, dataset="mnist", normalize=True, dtype=torch.float32)
    low = prepare_images(images, dataset="mnist", normalize=True, dtype=torch.bfloat16)
    assert low.dtype == torch.bfloat16 and torch.equal(low, ref.to(torch.bfloat16))
    assert images.tolist() == [[[0, 255], [51, 102]]]  # input untouched


def test_shape_batch_expand_resize_and_noop():
    x = torch.rand(2, 1, 28, 28)
    assert shape_batch(x, channels=1, image_size=28) is x
    rgb = shape_batch(x, channels=3, image_size=28)
    assert rgb.shape == (2, 3, 28, 28) and rgb.data_ptr() == x.data_ptr()
    assert rgb.stride(1) == 0 and torch.equal(rgb[:, 2], x[:, 0])
    big = shape_batch(x, channels=3, image_size=32)
    assert big.shape == (2, 3, 32, 32) and big.dtype == torch.float32
    half = shape_batch(x.to(torch.float16), channels=1, image_size=32)
    assert half.shape == (2, 1, 32, 32) and half.dtype == torch.float16
    assert torch.allclose(half.float(), big[:, :1], atol=1e-3)


def test_a_data_dir_that_does_not_exist_is_an_error_not_a_download(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a typo in --data-dir must not trigger a download")

    monkeypatch.setattr(fetch, "download_url", no_network)
    with pytest.raises(DataError, match="does not exist") as err:
        data._resolve_files("mnist", tmp_path / "typo")
    assert "typo" in str(err.value) and "HPO_DATA_DIR" in str(err.value)


def test_gather_rows_equals_indexing():
    x = torch.randn(10, 1, 4, 4)
    idx = torch.tensor([3, 0, 9, 3])
    out = gather_rows(x, idx)
    assert out.shape == (4, 1, 4, 4) and torch.equal(out, x[idx])


def test_gather_rows_into_a_reused_buffer():
    x = torch.randn(10, 1, 4, 4)
    buffer = torch.full((5, 1, 4, 4), float("nan"))
    first = gather_rows(x, torch.tensor([3, 0, 9, 3, 1]), out=buffer)
    assert first.data_ptr() == buffer.data_ptr() and torch.equal(first, x[[3, 0, 9, 3, 1]])
    last = gather_rows(x, torch.tensor([7, 2]), out=buffer)  # a short final batch
    assert last.shape == (2, 1, 4, 4) and torch.equal(last, x[[7, 2]])
