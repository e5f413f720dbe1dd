"""``hpo train --dataset ...`` end to end: image folders as a subprocess (in memory and
streamed from disk give the same run), CIFAR-10 and SVHN through the CLI's ``main`` with
the checksum registry pointed at small files in the official formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli import main
from tests.engine._fakedata import (
    use_local_checksums,
    write_cifar10,
    write_image_folder,
    write_svhn,
)

ROOT = Path(__file__).resolve().parents[2]
SMALL = ("--model", "fc", "--depth", "1", "--width", "8", "--batch-size", "4", "--json")


def _hpo(args: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "HPO_DATA_DIR"}
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), full.get("PYTHONPATH")) if p)
    full.update(HPO_CACHE_DIR=str(tmp / "cache"), **env)
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=tmp, env=full,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_train_on_an_image_folder_in_memory_and_streamed(tmp_path):
    write_image_folder(tmp_path / "imgs", {"a": 4, "b": 4, "c": 4}, splits=("train", "val",
                                                                             "test"))
    args = ["train", "--dataset", "imagefolder:imgs", "--image-size", "8", *SMALL]
    memory = _hpo(args, tmp_path)
    assert memory.returncode == 0, memory.stderr
    disk = _hpo(args, tmp_path, HPO_IMAGE_MEMORY_GIB="0")
    assert disk.returncode == 0, disk.stderr
    m, d = json.loads(memory.stdout), json.loads(disk.stdout)
    assert m["spec"]["dataset"] == "imagefolder:imgs" and m["train_samples"] == 12
    assert m["test_accuracy"] is not None and m["params_sha256"] == d["params_sha256"]
    assert "decoding batches from disk" in disk.stderr
    assert not (tmp_path / "cache").exists()  # nothing written


@pytest.mark.parametrize("dataset", ["cifar10", "svhn", "svhn_extra"])
def test_train_on_cifar10_and_svhn(tmp_path, monkeypatch, capsys, dataset):
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    if dataset == "cifar10":
        write_cifar10(data, per_batch=4)
    else:
        write_svhn(data, "extra_32x32.mat" if dataset == "svhn_extra" else "train_32x32.mat", 20)
        write_svhn(data, "test_32x32.mat", 10, seed=1)
    use_local_checksums(monkeypatch, dataset, data)
    code = main(["train", "--dataset", dataset, "--data-dir", str(data), "--val-size", "4",
                 *SMALL])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["train_samples"] == 16 and out["test_accuracy"] is not None
    # the channels used are recorded; image_size stays the dataset's (not given)
    assert (out["spec"]["channels"], out["spec"]["image_size"]) == (3, None)
    assert not (tmp_path / "cache").exists()  # found in --data-dir: nothing downloaded
