"""``hpo reproduce epfl-fc`` / ``epfl-hpo``: listed, and bad options are one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _hpo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HPO_STORAGE", None)
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_both_targets_are_listed(tmp_path) -> None:
    out = _hpo(tmp_path, "reproduce", "--help")
    assert out.returncode == 0 and "epfl-fc" in out.stdout and "epfl-hpo" in out.stdout


@pytest.mark.parametrize("args, word", [
    (("epfl-fc", "--seeds", "1"), "--seeds 1"),
    (("epfl-hpo", "--workers", "0"), "--workers 0"),
    (("epfl-hpo", "--kink-grad", "add"), "--kink-grad 'add'"),
])
def test_a_bad_option_is_one_line_and_writes_nothing(tmp_path, args, word) -> None:
    db = tmp_path / "s.db"
    out = _hpo(tmp_path, "reproduce", *args, "--storage", f"sqlite:///{db}",
               "--out", str(tmp_path / "out"))
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and word in lines[0] and "fix:" in lines[0]
    assert not db.exists() and not (tmp_path / "out").exists() and out.stdout == ""
