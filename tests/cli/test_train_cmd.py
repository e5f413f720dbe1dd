"""``hpo train`` end to end as a subprocess: a user's network by import path, the platform
record and the numerics settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = os.environ.get("HPO_DATA_DIR")
_CUDA = torch.cuda.is_available()

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

class Clamped(Net):
    def forward(self, x):
        return self.fc(self.conv(x).clamp(min=0).mean((2, 3)))

def clamped(num_classes, in_channels):
    return Clamped(in_channels, num_classes)
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


@pytest.mark.skipif(not DATA, reason="HPO_DATA_DIR is not set")
def test_json_carries_the_platform_record_read_inside_the_run(tmp_path):
    proc = _hpo(tmp_path, "--depth", "1", "--width", "16", "--train-subset", "256",
                "--val-size", "256", "--reduced-precision-reduction", "off", "--threads", "1",
                "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["spec"]["reduced_precision_reduction"] == "off"
    platform = result["platform"]
    for key in ("torch", "cpu_model", "cpu_capability", "blas", "mkldnn", "num_threads",
                "cuda_device", "cuda_capability", "cuda", "cudnn", "flags"):
        assert key in platform, key
    assert platform["num_threads"] == 1 and platform["device"] == "cpu"
    assert platform["cuda_device"] is None  # a CPU run names no GPU
    flags = platform["flags"]
    assert flags["cuda_matmul_allow_tf32"] is False and flags["cudnn_allow_tf32"] is False
    assert flags["fp16_reduced_precision_reduction"] is False  # the run's setting: off
    assert flags["bf16_reduced_precision_reduction"] is False
    assert flags["deterministic_algorithms"] is True
    human = _hpo(tmp_path, "--depth", "1", "--width", "16", "--train-subset", "256",
                 "--val-size", "256", "--threads", "1")
    assert human.returncode == 0, human.stderr
    assert f"platform: torch {platform['torch']} | {platform['cpu_model']}" in human.stdout


def test_tf32_on_a_cpu_exits_2_in_one_line_before_any_data(tmp_path):
    proc = _hpo(tmp_path, "--precision", "tf32")  # device defaults to cpu
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "precision 'tf32' needs a CUDA device (TF32 is an NVIDIA tensor-core format); " \
        "on a CPU use float32" in proc.stderr
    assert not (tmp_path / "cache").exists()
    proc = _hpo(tmp_path, "--reduced-precision-reduction", "maybe")
    assert proc.returncode == 2 and "'maybe'" in proc.stderr and "'off'" in proc.stderr


@pytest.mark.skipif(_CUDA, reason="checks a machine without CUDA")
def test_tf32_with_device_auto_on_a_cpu_machine_exits_2(tmp_path):
    proc = _hpo(tmp_path, "--precision", "tf32", "--device", "auto")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "needs a CUDA device" in proc.stderr and "device 'auto' is 'cpu'" in proc.stderr
    assert not (tmp_path / "cache").exists()


def test_a_setting_the_model_does_not_read_exits_2_naming_it(tmp_path):
    proc = _hpo(tmp_path, "--model", "resnet18", "--width", "64")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "width=64 is not read by model 'resnet18' (it reads none of depth, width, " \
        "batch_norm, width_mult); remove width." in proc.stderr
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(not DATA, reason="HPO_DATA_DIR is not set")
def test_fc_with_its_default_width_and_any_finite_relu_prime_zero_runs(tmp_path):
    proc = _hpo(tmp_path, "--model", "fc", "--width", "64", "--relu-prime-zero", "2",
                "--train-subset", "256", "--val-size", "256", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    spec = json.loads(proc.stdout)["spec"]
    assert (spec["depth"], spec["width"], spec["channels"]) == (2, 64, 1)
    assert "width_mult" not in spec and spec["relu_prime_zero"] == 2
    assert "relu_prime_zero=2 is outside [0, 1], so it is not a subgradient of relu at 0" \
        in proc.stderr


def test_an_audit_failure_is_a_bad_model_exit_2(tmp_path):
    # exit 2 needs ModelAuditError to be a usage error (hpo/errors.py, the config branch)
    proc = _hpo(tmp_path, "--model", "mymod:clamped")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "mymod:clamped" in proc.stderr
    assert not (tmp_path / "cache").exists()


def test_every_training_setting_has_its_flag_with_its_help():
    from hpo.engine.spec import FIELDS

    proc = subprocess.run([sys.executable, "-m", "hpo", "train", "--help"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT),
                                          "COLUMNS": "200"}, check=True)
    text = " ".join(proc.stdout.split())
    for row in FIELDS:
        assert "--" + row.name.replace("_", "-") in text, row.name
    assert "--depth DEPTH fc: number of hidden layers (default: 2)" in text
    assert "mobilenet_v3_small, mobilenet_v3_large: width multiplier (default: 1.0)" in text
