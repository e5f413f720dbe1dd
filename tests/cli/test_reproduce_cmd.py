"""``hpo reproduce section3`` end to end through the service, and its resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = os.environ.get("HPO_DATA_DIR")
pytestmark = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "MNIST").exists(), reason="needs the MNIST files (HPO_DATA_DIR)"
)


def _reproduce(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HPO_STORAGE", None)
    # A smoke-sized run: 7 quick cells at float32, 2 inits each, the first 256 images.
    args = ["reproduce", "section3", "--quick", "--inits", "2", "--precisions", "float32",
            "--train-subset", "256", "--workers", "1", "--storage",
            f"sqlite:///{tmp_path}/s.db", "--out", str(tmp_path / "out"), *extra]
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_study_of_probe_trials_then_a_rerun_that_computes_nothing_new(tmp_path) -> None:
    first = _reproduce(tmp_path, "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    lines = first.stdout.splitlines()
    assert len(lines) == 1  # --json: only the one object on stdout
    report = json.loads(lines[0])
    name = "section3-quick-k2-subset256-float32"
    assert report["study"] == name and report["complete"] and report["train_samples"] == 256
    assert report["trials_complete"] == report["trials_total"] == 7
    cells = report["cells"]
    assert len(cells) == 9  # 3 sweeps x 3 values, the shared cell in each
    for c in cells:
        assert c["inits"] == 2 and c["precision"] == "float32"
        assert c["fraction"] == c["bifurcated"] / 2
        assert 0 <= c["ci_low"] <= c["fraction"] <= c["ci_high"] <= 1
        assert c["paper_fraction"] is not None  # the paper has every float32 point
    assert report["platform"]["torch"] and "password" not in json.dumps(report)
    assert all(Path(f).is_file() for f in report["files"])

    # The study is an ordinary one: its trials are the grid's, with the probe's attributes.
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/s.db")
    trials = study.get_trials()
    assert len(trials) == 7 and {t.params["cell"] for t in trials} == {
        "L1-n256-b256", "L3-n256-b256", "L6-n256-b256", "L3-n16-b256", "L3-n1024-b256",
        "L3-n256-b16", "L3-n256-b1024"}
    assert {t.user_attrs["train_set"] for t in trials} == {"all"}

    again = _reproduce(tmp_path, "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    second = json.loads(again.stdout)
    assert second["cells"] == report["cells"]
    assert len(study.get_trials()) == 7  # resumed: nothing new to run

