"""``model:`` in a study file: built-ins, torchvision names and import paths, checked by
building the model once when the file loads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from hpo.config import load_study_config
from hpo.errors import ConfigError

NET = '''
import torch.nn.functional as F
from torch import nn

class Net(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))

def build(num_classes, in_channels):
    built.append(in_channels)
    return Net(in_channels, num_classes)

built = []

def seven(num_classes, in_channels):
    return Net(in_channels, 7)

def raises():
    raise ValueError("cannot build")
'''


@pytest.fixture
def usernet(tmp_path, monkeypatch):
    (tmp_path / "hpo_cfg_usernet.py").write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "hpo_cfg_usernet"
    sys.modules.pop("hpo_cfg_usernet", None)


def _load(tmp_path: Path, model, search=None):
    doc = {
        "name": "t",
        "n_trials": 2,
        "train": {"model": model, "channels": 1, "train_subset": 100, "val_size": 100},
        "search_space": {"relu_prime_zero": {"type": "float", "low": 0.0, "high": 1.0},
                         **(search or {})},
    }
    if model is None:
        del doc["train"]["model"]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_study_config(path)


def test_import_path_model_loads_and_is_built_once(tmp_path, usernet):
    cfg = _load(tmp_path, f"{usernet}:build")
    assert cfg.fixed["model"] == f"{usernet}:build"  # the study stores the string only
    assert sys.modules[usernet].built == [1]
    assert cfg.train_spec({"relu_prime_zero": 0.5}).model == f"{usernet}:build"


def test_torchvision_name_loads(tmp_path):
    assert _load(tmp_path, "squeezenet1_1").fixed["model"] == "squeezenet1_1"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("squeezenet11", "train.model: Unknown model 'squeezenet11': did you mean 'squeezenet1_1'"),
        ("no_such_module_q:build", "module 'no_such_module_q' is not importable here"),
        ("{m}:missing", "module '{m}' has no attribute 'missing'"),
        ("{m}:raises", "the factory raised ValueError: cannot build"),
        ("{m}:seven", "train.model: Model '{m}:seven' returns shape (1, 7)"),
    ],
)
def test_bad_model_is_one_line_naming_the_key(tmp_path, usernet, model, message):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, model.format(m=usernet))
    text = str(info.value)
    assert message.format(m=usernet) in text and "\n" not in text
    assert text.startswith(str(tmp_path / "study.yaml"))


def test_searched_models_are_each_checked(tmp_path, usernet):
    search = {"model": {"type": "categorical", "choices": ["fc", f"{usernet}:raises"]}}
    with pytest.raises(ConfigError, match=r"search_space\.model\.choices\[1\]: Model"):
        _load(tmp_path, None, search)
