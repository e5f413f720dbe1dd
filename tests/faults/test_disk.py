"""A full disk or a read-only storage location: a one-line error, never a corrupted study.

How the faults are made (tests run as root here, where chmod stops nothing):

* full disk: a 16 MiB tmpfs mounted for the test (``mount -t tmpfs -o size=16m``), filled
  with a filler file while a worker runs, so SQLite's write fails with ENOSPC exactly as on
  a full disk. Where mounting is not permitted (no CAP_SYS_ADMIN), the worker's SQLite
  connections are capped with ``PRAGMA max_page_count`` instead: SQLite then fails the
  write with the same SQLITE_FULL ("database or disk is full") that ENOSPC gives.
* read-only folder: a read-only bind mount of the study's folder (``mount --bind`` then
  ``mount -o remount,ro,bind``); without mount rights and not root, ``chmod a-w``.
* read-only database: SQLite's own read-only mode (``sqlite:///file:PATH?mode=ro&uri=true``),
  which needs no privilege.

Each test checks that the study's stored trials are unchanged (``PRAGMA integrity_check`` is
ok) and that a worker on a healthy storage then finishes exactly the budget.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.faults.harness import check_study, new_study, set_budget, start_worker, trials

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def _mounted(target: Path, *args: str):
    """Mount (``mount ARGS TARGET``) for the block; yields whether mounting was permitted."""
    ok = shutil.which("mount") is not None and _mount(*args, str(target))
    try:
        yield ok
    finally:
        if ok and subprocess.run(["umount", str(target)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _snapshot(url: str, name: str) -> dict[int, tuple]:
    return {t.number: (t.state, t.values, t.params, t.user_attrs, t.intermediate_values)
            for t in trials(url, name)}


def _integrity(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def _one_line_error(log: Path) -> str:
    out = log.read_text()
    assert "Traceback" not in out, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("hpo: error: "), out
    return last


def _a_study_with_three_finished_trials(url: str, tmp_path: Path) -> tuple[str, dict]:
    """A study whose first 3 trials are finished and whose budget is then raised to 12."""
    name, _, _ = new_study(url, tmp_path, n_trials=3, grace=2, epochs=1)
    first = start_worker(url, name, tmp_path / "first.log", trial_s=0.02)
    assert first.wait(timeout=60) == 0, (tmp_path / "first.log").read_text()
    before = _snapshot(url, name)
    set_budget(url, name, 12)
    return name, before


def test_full_disk_is_one_line_and_the_study_stays_intact(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with _mounted(disk, "-t", "tmpfs", "-o", "size=16m", "tmpfs") as real:
        db = disk / "studies.db"
        url = f"sqlite:///{db}"
        name, before = _a_study_with_three_finished_trials(url, tmp_path)
        # Fallback: no page beyond what the database has now.
        cap = None if real else sqlite3.connect(db).execute("PRAGMA page_count").fetchone()[0]
        log = tmp_path / "worker.log"
        # With a real disk to fill, the worker's third run holds at its end until the disk
        # is full (the gate), so the study cannot finish before.
        gate = tmp_path / "gate"
        proc = start_worker(url, name, log, trial_s=0.2, max_pages=cap,
                            gate=gate if real else None, gate_after=2)
        filler = disk / "filler"
        if real:
            deadline = time.monotonic() + 120  # a hang guard
            while sum(s[0] in FINISHED for s in _snapshot(url, name).values()) < 5:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            with open(filler, "wb") as out:  # the disk fills up under the running worker
                try:
                    while True:
                        out.write(b"\0" * 65536)
                        out.flush()
                except OSError:
                    pass
            gate.touch()
        code = proc.wait(timeout=120)
        line = _one_line_error(log)
        assert code == 1, log.read_text()
        assert f"storage {url} is full (database or disk is full)" in line, line
        if real:
            filler.unlink()  # space is freed
        assert _integrity(db) == "ok"
        after = _snapshot(url, name)
        assert {n: after[n] for n in before} == before
        again = start_worker(url, name, tmp_path / "again.log", trial_s=0.02)
        assert again.wait(timeout=120) == 0, (tmp_path / "again.log").read_text()
        check = check_study(trials(url, name), 12)
    how = "a full 16 MiB tmpfs" if real else f"PRAGMA max_page_count = {cap}"
    print(f"\nfull disk ({how}): {line}\n  integrity ok, {len(before)} earlier trials "
          f"unchanged; after freeing space the study finished {check.finished}/12 "
          f"({check.lost} trial re-run)")


def test_read_only_folder_is_one_line_and_the_study_stays_intact(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    url = f"sqlite:///{src / 'studies.db'}"
    name, before = _a_study_with_three_finished_trials(url, tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    with _mounted(ro, "--bind", str(src)) as bound:
        how = "a read-only bind mount"
        if bound:
            if not _mount("-o", "remount,ro,bind", str(ro)):
                pytest.fail("bind-mounted but could not remount read-only")
            folder = ro
        elif os.geteuid() != 0:
            how, folder = "chmod a-w", src
            (src / "studies.db").chmod(0o444)
            src.chmod(0o555)
        else:
            pytest.skip("root without the right to mount: no way to make a folder read-only")
        log = tmp_path / "worker.log"
        proc = start_worker(f"sqlite:///{folder / 'studies.db'}", name, log, trial_s=0.02)
        code = proc.wait(timeout=60)
        line = _one_line_error(log)
        assert code == 1 and "is in a read-only folder" in line, line
    if not bound and os.geteuid() != 0:
        src.chmod(0o755)
        (src / "studies.db").chmod(0o644)
    assert _integrity(src / "studies.db") == "ok"
    assert _snapshot(url, name) == before
    print(f"\nread-only folder ({how}): {line}")


def test_read_only_database_is_one_line_and_the_study_stays_intact(tmp_path: Path) -> None:
    db = tmp_path / "studies.db"
    url = f"sqlite:///{db}"
    name, before = _a_study_with_three_finished_trials(url, tmp_path)
    log = tmp_path / "worker.log"
    proc = start_worker(f"sqlite:///file:{db}?mode=ro&uri=true", name, log, trial_s=0.02)
    code = proc.wait(timeout=60)
    line = _one_line_error(log)
    assert code == 1 and "is read-only (attempt to write a readonly database)" in line, line
    assert _integrity(db) == "ok"
    assert _snapshot(url, name) == before
    print(f"\nread-only database (SQLite mode=ro): {line}")
