"""Tests for hpo.engine.data.registry (the registry), how TrainSpec reads it, per-channel
normalisation, and training the existing models on 3-channel datasets (hpo.engine.data.loading)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hpo.engine.data import loading
from hpo.engine.data.registry import DATASET_INFO, DATASETS, dataset_info
from hpo.engine.data.tensors import prepare_images
from hpo.engine.spec import TrainSpec
from hpo.engine.train import train
from hpo.errors import ConfigError
from tests.engine._fakedata import use_local_checksums, write_cifar10, write_svhn


def test_registry_names_and_sizes():
    assert DATASETS == ("mnist", "fashion_mnist", "cifar10", "svhn", "svhn_extra")
    assert (DATASET_INFO["cifar10"].train_size, DATASET_INFO["svhn"].train_size,
            DATASET_INFO["svhn_extra"].train_size) == (50000, 73257, 531131)
    info = dataset_info("imagefolder:/some/where")
    assert (info.channels, info.num_classes, info.train_size) == (3, None, None)


@pytest.mark.parametrize("name, match", [
    ("cifar100", r"Unknown dataset 'cifar100'. Valid values are \['mnist'.*'imagefolder:PATH'"),
    ("imagefolder:", r"image folder path is empty; write imagefolder:/path/to/folder"),
])
def test_unknown_names_list_the_valid_ones(name, match):
    with pytest.raises(ConfigError, match=match):
        TrainSpec(dataset=name)


def test_the_registry_imports_no_torch():
    code = "import sys, hpo.engine.data.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("settings, channels, size", [
    ({"model": "fc"}, 1, 28),
    ({"model": "resnet18"}, 3, 28),
    ({"model": "vgg11"}, 3, 32),
    ({"model": "fc", "dataset": "cifar10"}, 3, 32),
    ({"model": "resnet18", "dataset": "svhn_extra"}, 3, 32),
    ({"model": "fc", "dataset": "imagefolder:/x"}, 3, 32),
    ({"model": "fc", "dataset": "imagefolder:/x", "channels": 1, "image_size": 64}, 1, 64),
])
def test_channels_and_image_size_follow_the_dataset(settings, channels, size):
    spec = TrainSpec(**settings)
    assert (spec.resolved_channels, spec.resolved_image_size) == (channels, size)


def test_gray_input_for_an_rgb_archive_is_refused():
    with pytest.raises(ConfigError, match=r"channels=1 does not fit dataset 'cifar10'.*3 ch"):
        TrainSpec(dataset="cifar10", channels=1)


@pytest.mark.parametrize("settings, match", [
    ({"dataset": "cifar10", "val_size": 50000},
     r"val_size=50000 does not fit the 50000 training images of 'cifar10'; allowed 1 to 49999"),
    ({"dataset": "cifar10", "train_subset": 45000},
     r"train_subset=45000 with val_size=10000 .* 'cifar10'; allowed train_subset: 1 to 40000"),
    ({"dataset": "svhn", "train_subset": 70000}, r"1 to 63257"),
    ({"dataset": "mnist", "train_subset": 60000}, r"'mnist'; allowed train_subset: 1 to 50000"),
])
def test_settings_larger_than_a_known_dataset_are_config_errors(settings, match):
    with pytest.raises(ConfigError, match=match):
        TrainSpec(**settings)
    TrainSpec(**{**settings, "dataset": "svhn_extra"})  # the extra split has room for them


def test_per_channel_normalisation_uses_each_channels_constants():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    x = prepare_images(images.contiguous(), dataset="cifar10", normalize=True,
                       dtype=torch.float64)
    mean, std = DATASET_INFO["cifar10"].mean, DATASET_INFO["cifar10"].std
    for c, value in enumerate((0, 51, 255)):
        assert torch.all(x[:, c] == (value / 255.0 - mean[c]) / std[c])
    gray = prepare_images(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8),
                          dataset="imagefolder:/x", normalize=True, dtype=torch.float64)
    assert gray.shape == (1, 1, 2, 2)
    assert torch.allclose(gray, torch.tensor((1 - 0.449) / 0.226, dtype=torch.float64))


@pytest.mark.parametrize("model", ["fc", "resnet18"])
def test_the_models_train_on_cifar10(tmp_path, monkeypatch, model):
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    write_cifar10(tmp_path, per_batch=4)
    use_local_checksums(monkeypatch, "cifar10", tmp_path)
    spec = TrainSpec(model=model, dataset="cifar10", val_size=4, batch_size=8, epochs=1,
                     **({"depth": 1, "width": 8} if model == "fc" else {}))
    result = train(spec, data_dir=tmp_path)
    assert result.train_samples == 16 and len(result.val_accuracy) == 1
    assert result.test_accuracy is not None and not result.diverged
    # The same data for the same settings: a second run is bit for bit the same.
    assert train(spec, data_dir=tmp_path).params_sha256 == result.params_sha256


def test_svhn_loads_into_splits_with_its_ten_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    write_svhn(tmp_path, "train_32x32.mat", 20)
    write_svhn(tmp_path, "test_32x32.mat", 10, seed=1)
    use_local_checksums(monkeypatch, "svhn", tmp_path)
    spec = TrainSpec(dataset="svhn", val_size=5)
    splits = loading.load_splits(spec, tmp_path, torch.float32, torch.device("cpu"))
    assert splits.train.x.shape == (15, 3, 32, 32) and len(splits.val.y) == 5
    assert splits.num_classes == 10 and len(splits.test.y) == 10
