"""Tests for hpo.engine.data.archives (and the fetching it shares, hpo.engine.data.fetch):
CIFAR-10's
python archive and SVHN's .mat files read back exactly, verified before parsing."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10, SVHN

from hpo.engine.data import archives, fetch
from hpo.errors import ConfigError, DataError
from tests.engine._fakedata import use_local_checksums, write_cifar10, write_svhn


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty cache, no HPO_DATA_DIR, and every download failing at once."""

    def fail(url, *args, **kwargs):
        raise OSError(f"offline: {url}")

    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HPO_DATA_DIR", raising=False)
    monkeypatch.setattr(fetch, "download_url", fail)


def test_the_registry_holds_torchvisions_names_urls_and_md5s():
    (cifar,) = archives.FILES["cifar10"]
    assert (cifar.filename, cifar.md5, cifar.urls) == (
        CIFAR10.filename, CIFAR10.tgz_md5, (CIFAR10.url,))
    train, test = archives.FILES["svhn"]
    extra, test2 = archives.FILES["svhn_extra"]
    for f, split in ((train, "train"), (test, "test"), (extra, "extra"), (test2, "test")):
        url, filename, md5 = SVHN.split_list[split]
        assert (f.filename, f.md5, f.urls) == (filename, md5, (url,))


def test_cifar10_pixels_labels_and_channel_order(tmp_path, monkeypatch, offline):
    data = tmp_path / "data"
    train_x, train_y, test_x, test_y = write_cifar10(data, per_batch=3)
    use_local_checksums(monkeypatch, "cifar10", data)
    raw = archives.load_archive("cifar10", data)
    assert raw.train_images.dtype == torch.uint8 and raw.train_images.shape == (15, 3, 32, 32)
    assert raw.test_images.shape == (3, 3, 32, 32) and raw.train_labels.dtype == torch.int64
    assert torch.equal(raw.train_images, train_x) and torch.equal(raw.train_labels, train_y)
    assert torch.equal(raw.test_images, test_x) and torch.equal(raw.test_labels, test_y)
    # The file's rows are the R plane, then G, then B, each row-major 32x32: check against the
    # pickled bytes themselves, not the writer's reshape.
    with open(data / CIFAR10.filename, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    import tarfile

    with tarfile.open(data / CIFAR10.filename) as tar:
        batch = pickle.loads(tar.extractfile("cifar-10-batches-py/data_batch_2").read())
    row = torch.from_numpy(batch["data"][1].copy())
    img = raw.train_images[3 + 1]  # batch 2, image 1
    assert img[0, 0, 1] == row[1] and img[0, 1, 0] == row[32]
    assert img[1, 0, 0] == row[1024] and img[2, 31, 31] == row[3071]
    assert raw.train_labels[4] == batch["labels"][1]
    assert b"numpy.core.multiarray" in tar_member(data, "data_batch_1")  # as the official files
    # Once per process: the same object for the same files.
    assert archives.load_archive("cifar10", data) is raw


def test_cifar10_wrong_checksum_with_the_official_registry_is_an_error(tmp_path, offline,
                                                                        monkeypatch):
    data = tmp_path / "data"
    write_cifar10(data)
    parsed = []
    monkeypatch.setattr(archives, "read_cifar10", lambda p: parsed.append(p))
    with pytest.raises(DataError) as info:
        archives.load_archive("cifar10", data)
    msg = str(info.value)
    assert CIFAR10.filename in msg and "bad checksum" in msg and CIFAR10.tgz_md5 in msg
    assert "delete it" in msg and parsed == []  # nothing was parsed


def test_a_file_changed_after_its_checksum_was_registered_is_refused(tmp_path, monkeypatch,
                                                                     offline):
    data = tmp_path / "data"
    write_cifar10(data)
    use_local_checksums(monkeypatch, "cifar10", data)
    write_cifar10(data, seed=1)  # same name, other content
    with pytest.raises(DataError, match="bad checksum"):
        archives.verify_archive("cifar10", data)


def tar_member(root: Path, name: str) -> bytes:
    import tarfile

    with tarfile.open(root / CIFAR10.filename) as tar:
        return tar.extractfile(f"{CIFAR10.base_folder}/{name}").read()


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_unpickler_refuses_any_other_global(tmp_path, monkeypatch, offline):
    data, marker = tmp_path / "data", tmp_path / "pwned"
    write_cifar10(data, batch={"data": _Exploit(marker), "labels": []})
    use_local_checksums(monkeypatch, "cifar10", data)  # even a "verified" file
    with pytest.raises(DataError, match=r"data_batch_1: not a CIFAR-10 batch.*not allowed"):
        archives.load_archive("cifar10", data)
    assert not marker.exists()


def test_cifar10_batch_of_the_wrong_shape(tmp_path, monkeypatch, offline):
    data = tmp_path / "data"
    write_cifar10(data, batch={"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]})
    use_local_checksums(monkeypatch, "cifar10", data)
    with pytest.raises(DataError, match=r"uint8 \(N, 3072\)"):
        archives.load_archive("cifar10", data)


def test_svhn_layout_and_label_10_is_digit_0(tmp_path, monkeypatch, offline):
    import scipy.io

    data = tmp_path / "data"
    train_x, train_y = write_svhn(data, "train_32x32.mat", 12, seed=0)
    test_x, test_y = write_svhn(data, "test_32x32.mat", 10, seed=1)
    use_local_checksums(monkeypatch, "svhn", data)
    raw = archives.load_archive("svhn", data)
    assert raw.train_images.shape == (12, 3, 32, 32) and raw.train_images.dtype == torch.uint8
    assert torch.equal(raw.train_images, train_x) and torch.equal(raw.test_images, test_x)
    assert torch.equal(raw.train_labels, train_y) and torch.equal(raw.test_labels, test_y)
    mat = scipy.io.loadmat(data / "train_32x32.mat")
    # X is (H, W, C, N): pixel (h=2, w=5) of channel 1 of image 7.
    assert raw.train_images[7, 1, 2, 5] == mat["X"][2, 5, 1, 7]
    assert mat["y"][9, 0] == 10 and raw.train_labels[9] == 0
    assert sorted(raw.train_labels.tolist()) == sorted([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2])


def test_svhn_extra_trains_on_the_extra_split(tmp_path, monkeypatch, offline):
    data = tmp_path / "data"
    extra_x, _ = write_svhn(data, "extra_32x32.mat", 11, seed=2)
    write_svhn(data, "test_32x32.mat", 10, seed=1)
    use_local_checksums(monkeypatch, "svhn_extra", data)
    raw = archives.load_archive("svhn_extra", data)
    assert torch.equal(raw.train_images, extra_x) and len(raw.test_labels) == 10


def test_svhn_file_that_is_not_a_mat_file(tmp_path, monkeypatch, offline):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_32x32.mat").write_bytes(b"not matlab" * 20)
    write_svhn(data, "test_32x32.mat", 10)
    use_local_checksums(monkeypatch, "svhn", data)
    with pytest.raises(DataError, match="train_32x32.mat: cannot read"):
        archives.load_archive("svhn", data)


def test_missing_archive_offline_says_what_to_put_where(offline, tmp_path):
    with pytest.raises(DataError) as info:
        archives.verify_archive("svhn")
    msg = str(info.value)
    assert "missing train_32x32.mat" in msg and "download failed" in msg
    assert "--data-dir" in msg and "HPO_CACHE_DIR" in msg and SVHN.split_list["train"][0] in msg


def test_download_goes_to_the_cache_then_no_network(tmp_path, monkeypatch, offline):
    source = tmp_path / "source"
    write_cifar10(source)
    use_local_checksums(monkeypatch, "cifar10", source)
    (f,) = archives.FILES["cifar10"]
    monkeypatch.setitem(archives.FILES, "cifar10",
                        (fetch.RemoteFile(f.filename, f.md5, ("http://x/" + f.filename,)),))
    calls = []

    def fake_download(url, root, filename, md5):
        calls.append(url)
        assert filename.startswith(".") and filename.endswith(".part")  # a private name
        shutil.copy(source / CIFAR10.filename, Path(root) / filename)

    monkeypatch.setattr(fetch, "download_url", fake_download)
    (path,) = archives.verify_archive("cifar10")
    assert path == tmp_path / "cache" / CIFAR10.filename and calls == ["http://x/" + f.filename]
    assert [p.name for p in path.parent.iterdir()] == [CIFAR10.filename]
    monkeypatch.setattr(fetch, "download_url", lambda *a, **k: pytest.fail("downloaded again"))
    assert archives.verify_archive("cifar10") == (path,)


def test_a_data_dir_that_does_not_exist_is_an_error_not_a_download(tmp_path, offline):
    with pytest.raises(DataError, match="does not exist"):
        archives.verify_archive("cifar10", tmp_path / "typo")


def test_unknown_archive_dataset():
    with pytest.raises(ConfigError, match=r"cifar100.*Valid names.*cifar10"):
        archives.verify_archive("cifar100")
