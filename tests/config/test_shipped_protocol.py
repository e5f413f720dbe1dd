"""The shipped protocol studies (ResNet18/VGG11 on CIFAR10/SVHN, with and without BN, and
the Section 4.3 grid) run end to end with their CPU smoke settings on generated data."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo.cli import main
from hpo.config import load_study_config
from hpo.engine.train import train
from tests.engine._fakedata import use_local_checksums, write_cifar10, write_svhn

STUDY_CONFIGS = Path(__file__).resolve().parents[2] / "study_configs"
PROTOCOL = [
    *(f"{m}_{d}_{o}_{bn}" for m, d, o in [("resnet18", "cifar10", "sgd"),
                                          ("vgg11", "cifar10", "adam"),
                                          ("vgg11", "svhn", "adam")]
      for bn in ("bn", "nobn")),
    "resnet18_cifar10_sgd_lr_grid",
]


def _fake(dataset: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enough generated images for the smoke settings (256 train + 256 validation)."""
    if dataset == "cifar10":
        write_cifar10(root, per_batch=104)
    else:
        write_svhn(root, "train_32x32.mat", 520)
        write_svhn(root, "test_32x32.mat", 64, seed=1)
    use_local_checksums(monkeypatch, dataset, root)


def test_the_protocol_studies_are_shipped():
    assert {p.stem for p in STUDY_CONFIGS.glob("*.yaml")} >= set(PROTOCOL)


@pytest.mark.parametrize("name", PROTOCOL)
def test_smoke_settings_train_one_tuned_trial(name, tmp_path, monkeypatch):
    cfg = load_study_config(STUDY_CONFIGS / f"{name}.yaml")
    assert cfg.fixed["epochs"] == 1 and cfg.fixed["train_subset"] <= 256
    _fake(cfg.fixed["dataset"], tmp_path, monkeypatch)
    params = {"relu_prime_zero": 1.0}
    if "lr" in cfg.search_space:
        params["lr"] = 0.01
    result = train(cfg.train_spec(params, seed=0), data_dir=tmp_path)
    assert result.epochs_completed == 1 and result.train_samples == 256
    assert result.configured_activations > 0


def test_a_shipped_study_runs_through_create_and_worker(tmp_path, monkeypatch, capsys):
    path = STUDY_CONFIGS / "vgg11_svhn_adam_nobn.yaml"
    data = tmp_path / "data"
    _fake("svhn", data, monkeypatch)
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["create", str(path), "--storage", url, "--n-trials", "1"]) == 0
    assert main(["worker", str(path), "--storage", url, "--data-dir", str(data),
                 "--threads", "1"]) == 0
    assert main(["status", str(path), "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "vgg11_svhn_adam_nobn" in out


def test_lr_grid_study_gives_the_best_accuracy_per_relu_prime_zero(tmp_path, monkeypatch,
                                                                   capsys):
    path = STUDY_CONFIGS / "resnet18_cifar10_sgd_lr_grid.yaml"
    data = tmp_path / "data"
    _fake("cifar10", data, monkeypatch)
    url = f"sqlite:///{tmp_path / 'g.db'}"
    # The whole grid: the tell of its last point makes Optuna's GridSampler call
    # study.stop() outside optimize(); the worker still stores it and ends cleanly.
    assert main(["create", str(path), "--storage", url]) == 0
    assert main(["worker", str(path), "--storage", url, "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert main(["compare", str(path), "--storage", url, "--best-per", "relu_prime_zero"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["relu_prime_zero", "best_value", "trial", "trials"]
    assert [line.split()[0] for line in lines[1:]] == ["0.0", "1.0"]
    assert sorted(int(line.split()[3]) for line in lines[1:]) == [2, 2]
    states = [t.state for t in optuna.load_study(study_name=path.stem, storage=url).trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 4
    assert {line.split()[4] for line in lines[1:]} <= {"0.01", "0.05"}  # the best one's lr
