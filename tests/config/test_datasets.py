"""Datasets in a study YAML: every name validates, and settings that exceed a dataset of
known size are one-line errors naming the key, before any data is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hpo.config import load_study_config
from hpo.errors import ConfigError

BASE: dict[str, Any] = {
    "name": "t",
    "n_trials": 2,
    "sampler": {"name": "random", "seed": 0},
    "train": {"model": "fc", "epochs": 1},
    "search_space": {"relu_prime_zero": {"type": "float", "low": 0.0, "high": 1.0}},
}


def _load(tmp_path: Path, train: dict[str, Any], search_space: dict[str, Any] | None = None):
    doc = {**BASE, "train": {**BASE["train"], **train},
           "search_space": {**BASE["search_space"], **(search_space or {})}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_study_config(path)


@pytest.mark.parametrize("dataset", ["cifar10", "svhn", "svhn_extra", "imagefolder:/no/such"])
def test_every_dataset_name_validates_without_reading_data(tmp_path, dataset):
    cfg = _load(tmp_path, {"dataset": dataset, "train_subset": 1000})
    assert cfg.train_spec({"relu_prime_zero": 0.5}).dataset == dataset


@pytest.mark.parametrize("train, key, match", [
    ({"dataset": "cifar10", "train_subset": 45000}, "train.train_subset",
     r"train_subset=45000 .* 50000 training images of 'cifar10'; allowed train_subset: 1 to "
     r"40000"),
    ({"dataset": "svhn", "val_size": 80000}, "train.val_size",
     r"val_size=80000 does not fit the 73257 training images of 'svhn'"),
    ({"dataset": "cifar100"}, "train.dataset",
     r"Unknown dataset 'cifar100'. Valid values are .*'svhn_extra'.*'imagefolder:PATH'"),
    ({"dataset": "cifar10", "channels": 1}, "train.channels", r"channels=1 does not fit dataset"),
])
def test_bad_dataset_settings_name_the_value_and_the_fix(tmp_path, train, key, match):
    with pytest.raises(ConfigError, match=match) as info:
        _load(tmp_path, train)
    assert "\n" not in str(info.value) and f"study.yaml: {key}: " in str(info.value)


def test_a_searched_train_subset_beyond_the_dataset_is_an_error(tmp_path):
    space = {"train_subset": {"type": "int", "low": 1000, "high": 45000}}
    with pytest.raises(ConfigError, match=r"train_subset.*45000.*1 to 40000"):
        _load(tmp_path, {"dataset": "cifar10"}, space)
    _load(tmp_path, {"dataset": "cifar10"},
          {"train_subset": {"type": "int", "low": 1000, "high": 40000}})


def test_a_searched_dataset_checks_each_choice(tmp_path):
    space = {"dataset": {"type": "categorical", "choices": ["mnist", "svhn_extra"]}}
    with pytest.raises(ConfigError, match=r"'mnist'; allowed train_subset: 1 to 50000"):
        _load(tmp_path, {"train_subset": 60000}, space)
    _load(tmp_path, {"train_subset": 50000}, space)
