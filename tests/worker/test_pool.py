"""hpo.worker.pool.check_data: every dataset a study trains on is verified before workers
start (archives checksummed and downloaded once, image folders' layout checked); and
check_device: a worker without CUDA refuses a study that may train in tf32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from hpo.config import load_study_config
from hpo.engine.data import fetch
from hpo.errors import ConfigError, DataError
from hpo.worker.pool import check_data, check_device
from tests.engine._fakedata import use_local_checksums, write_cifar10, write_image_folder


def _cfg(tmp_path: Path, datasets: list[str]):
    one = len(datasets) == 1
    space = {"dataset": {"type": "categorical", "choices": datasets}}
    doc = {
        "name": "t", "n_trials": 2, "sampler": {"name": "random", "seed": 0},
        "train": {"model": "fc", "train_subset": 100, **({"dataset": datasets[0]} if one else {})},
        "search_space": {"relu_prime_zero": {"type": "float", "low": 0, "high": 1}} if one
        else space,
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    return load_study_config(tmp_path / "s.yaml")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HPO_DATA_DIR", raising=False)
    monkeypatch.setattr(fetch, "download_url", lambda url, *a, **k: (_ for _ in ()).throw(
        OSError(f"offline: {url}")))


def test_every_searched_dataset_is_verified(tmp_path, monkeypatch, offline):
    data = tmp_path / "data"
    write_cifar10(data)
    use_local_checksums(monkeypatch, "cifar10", data)
    write_image_folder(tmp_path / "imgs", {"a": 1, "b": 1})
    cfg = _cfg(tmp_path, ["cifar10", f"imagefolder:{tmp_path / 'imgs'}"])
    check_data(cfg, data)  # both fine
    (tmp_path / "imgs" / "test" / "b" / "000.png").unlink()
    (tmp_path / "imgs" / "test" / "b").rmdir()
    with pytest.raises(ConfigError, match=r"test/ has different classes.*missing \['b'\]"):
        check_data(cfg, data)


def test_a_missing_archive_is_reported_before_any_worker(tmp_path, offline):
    cfg = _cfg(tmp_path, ["svhn"])
    with pytest.raises(DataError, match=r"dataset 'svhn': missing train_32x32.mat"):
        check_data(cfg)


# --- check_device: tf32 without CUDA is refused where the device is resolved -----------
def _precision_cfg(tmp_path: Path, choices: list[str], device: str | None):
    doc = {
        "name": "t", "n_trials": 2, "sampler": {"name": "random", "seed": 0},
        "train": {"model": "fc", "train_subset": 100, **({"device": device} if device else {})},
        "search_space": {"precision": {"type": "categorical", "choices": choices}},
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    return load_study_config(tmp_path / "p.yaml")


def test_a_study_file_with_device_cpu_cannot_list_tf32(tmp_path):
    with pytest.raises(ConfigError, match=r"search_space\.precision.*'tf32' needs a CUDA device"):
        _precision_cfg(tmp_path, ["float32", "tf32"], None)  # device: TrainSpec's cpu


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_worker_without_cuda_refuses_tf32_with_device_auto(tmp_path):
    cfg = _precision_cfg(tmp_path, ["float32", "tf32"], "auto")  # loads: GPU workers may run it
    with pytest.raises(ConfigError, match=r"p\.yaml: precision 'tf32' needs a CUDA "
                       r"device .*device 'auto' is 'cpu' on this machine"):
        check_device(cfg)
    check_device(_precision_cfg(tmp_path, ["float32", "bfloat16"], "auto"))  # no tf32: fine
