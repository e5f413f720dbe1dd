"""Opening what exists: no empty database made by a lookup; other databases named; a stored
study's model checked before a worker takes a trial."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from hpo.config.study import load_study_config
from hpo.errors import ConfigError, StudyNotFoundError
from hpo.storage.rdb import make_storage
from hpo.storage.urls import default_storage_url
from hpo.worker.lookup import (
    check_study_models,
    load_existing_study,
    open_existing_storage,
    storage_overview,
)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "study_configs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    return tmp_path


def test_a_missing_project_database_is_not_created(project) -> None:
    with pytest.raises(StudyNotFoundError) as info:
        open_existing_storage(default_storage_url())
    text = str(info.value)
    assert text.startswith("this project has no studies yet")
    assert f"the project folder is '{project}'" in text and "fix: create the study" in text
    assert not (project / "storage").exists()
    assert storage_overview(default_storage_url()) == [
        f"storage sqlite:///{project}/storage/hpo.db: no studies yet (the file does not "
        "exist; hpo create CONFIG or hpo run CONFIG writes it)"]
    assert not (project / "storage").exists()


def test_the_overview_lists_every_study_then_the_other_databases(project) -> None:
    storage = make_storage(default_storage_url())
    for name in ("b", "a"):
        optuna.create_study(study_name=name, storage=storage)
    old = make_storage("sqlite:///storage/legacy/q.db")
    optuna.create_study(study_name="q", storage=old)
    lines = storage_overview(default_storage_url())
    assert lines[0] == f"storage sqlite:///{project}/storage/hpo.db: 2 studies"
    assert [x.split(" (")[0] for x in lines if x.startswith("study ")] == ["study b", "study a"]
    assert lines[-1] == "  hpo status --storage sqlite:///storage/legacy/q.db"
    # seen from the old file, the project database is the other one
    assert storage_overview("sqlite:///storage/legacy/q.db")[-1] == (
        "  hpo status --storage sqlite:///storage/hpo.db")


def test_a_study_not_found_names_its_own_old_file(project) -> None:
    optuna.create_study(study_name="new", storage=make_storage(default_storage_url()))
    optuna.create_study(study_name="quick", storage=make_storage("sqlite:///storage/quick.db"))
    with pytest.raises(StudyNotFoundError) as info:
        load_existing_study("quick", default_storage_url())
    assert str(info.value).endswith(
        "it may be in sqlite:///storage/quick.db: add --storage sqlite:///storage/quick.db.")
    assert "existing studies: ['new']" in str(info.value)
    with pytest.raises(StudyNotFoundError) as other:
        load_existing_study("nothere", default_storage_url())
    assert "other databases under storage/: sqlite:///storage/quick.db" in str(other.value)


# -- a stored study's model, checked before a worker takes a trial ----------------------------
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
    return Net(in_channels, num_classes)
'''


def _study_file(folder, module: str, name: str) -> Path:
    doc = {
        "name": name,
        "n_trials": 3,
        "sampler": {"name": "random", "seed": 0},
        "pruner": "none",
        "train": {"model": f"{module}:build", "channels": 1, "train_subset": 100,
                  "val_size": 100, "epochs": 1},
        "search_space": {"relu_prime_zero": {"type": "float", "low": 0.0, "high": 1.0}},
        "baseline": {"seeds": 1},
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_stored_model_that_no_longer_imports_is_one_line(tmp_path, monkeypatch) -> None:
    module = f"h3net_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_study_config(_study_file(tmp_path, module, "gone"))
    check_study_models(cfg)  # importable: passes
    (tmp_path / f"{module}.py").unlink()
    sys.modules.pop(module, None)
    importlib.invalidate_caches()
    with pytest.raises(ConfigError) as info:
        check_study_models(cfg)
    text = str(info.value)
    assert text.startswith("study gone: train.model: ") and "\n" not in text
    assert f"module '{module}' is not importable here" in text and f"'{module}:build'" in text


def test_worker_study_with_a_model_that_does_not_import_exits_2_before_a_trial(
    tmp_path,
) -> None:
    """`hpo worker --study NAME` refuses, as `hpo worker CONFIG` does, where the model path
    does not import: exit 2, one line, no trial taken (none FAIL, none RUNNING)."""
    module = f"h3net_{uuid.uuid4().hex[:8]}"
    models = tmp_path / "models"
    models.mkdir()
    (models / f"{module}.py").write_text(NET)
    url = f"sqlite:///{tmp_path / 's.db'}"
    env = {k: v for k, v in os.environ.items() if k != "HPO_STORAGE"}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([str(models), root])
    config = _study_file(tmp_path, module, "moved")
    made = subprocess.run([sys.executable, "-m", "hpo", "create", str(config), "--storage", url],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    env["PYTHONPATH"] = root  # another machine: the module is not there
    proc = subprocess.run(
        [sys.executable, "-m", "hpo", "worker", "--study", "moved", "--storage", url],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("hpo: error: study moved: train.model: ")
    assert f"module '{module}' is not importable here" in lines[0]
    study = optuna.load_study(study_name="moved", storage=url)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.WAITING]  # the baseline, still queued
