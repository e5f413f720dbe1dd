"""``hpo train --model`` end to end as a subprocess: a user's network by import path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = os.environ.get("HPO_DATA_DIR")

NET = '''
import torch.nn.functional as F
from torch import nn

class Net(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, stride=2)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))

def build(num_classes, in_channels):
    return Net(in_channels, num_classes)

def bad(num_classes):
    return nn.Linear(3, num_classes)
'''


def _hpo(tmp_path: Path, *args: str, pythonpath: bool = True) -> subprocess.CompletedProcess:
    (tmp_path / "mymod.py").write_text(NET)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    paths = [str(ROOT)] + ([str(tmp_path)] if pythonpath else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["HPO_CACHE_DIR"] = str(tmp_path / "cache")
    work = tmp_path / "work"  # not the module's folder: the import comes from PYTHONPATH
    work.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "hpo", "train", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not DATA, reason="HPO_DATA_DIR is not set")
def test_train_imports_the_model_from_pythonpath(tmp_path):
    proc = _hpo(tmp_path, "--model", "mymod:build", "--channels", "1", "--train-subset", "256",
                "--val-size", "256", "--relu-prime-zero", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["spec"]["model"] == "mymod:build"
    assert result["configured_activations"] == 1  # the routed F.relu
    assert result["epochs_completed"] == 1 and len(result["params_sha256"]) == 64


def test_train_with_a_bad_model_exits_2_in_one_line_before_any_data(tmp_path):
    proc = _hpo(tmp_path, "--model", "mymod:bad")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "Model 'mymod:bad' fails on a (1, 3, 28, 28) example input" in proc.stderr
    assert not (tmp_path / "cache").exists()
    proc = _hpo(tmp_path, "--model", "mymod:build", pythonpath=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "module 'mymod' is not importable here" in proc.stderr
