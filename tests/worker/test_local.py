"""hpo.worker.local.StudyRun: the exit code and the report of ``hpo run`` and ``hpo reproduce``
(a signal that stopped the run; each failed worker with the end of its log)."""

from __future__ import annotations

import signal
from pathlib import Path

from hpo.worker.local import StudyRun
from hpo.worker.pool import LocalRun


def _run(tmp_path: Path, **outcome) -> StudyRun:
    return StudyRun(config=None, study=None, log_dir=tmp_path, workers=LocalRun(**outcome))


def test_all_workers_done_is_exit_0_and_no_report(tmp_path) -> None:
    run = _run(tmp_path, exit_codes=[0, 0], logs=[tmp_path / "a", tmp_path / "b"])
    assert run.ok and run.exit_code == 0 and run.problems() == []


def test_a_failed_worker_is_exit_1_with_the_end_of_its_log(tmp_path) -> None:
    log = tmp_path / "worker-1.log"
    log.write_text("".join(f"line {i}\n" for i in range(9)))
    run = _run(tmp_path, exit_codes=[0, 2, 1], logs=[tmp_path / "w0", log, tmp_path / "gone"])
    assert not run.ok and run.exit_code == 1
    assert run.problems() == [
        f"hpo: error: worker 1 exited with 2; its log {log} ends with:",
        "  line 4", "  line 5", "  line 6", "  line 7", "  line 8",
        f"hpo: error: worker 2 exited with 1; its log {tmp_path / 'gone'} ends with:",
    ]


def test_a_signal_is_128_plus_its_number_and_says_how_to_resume(tmp_path) -> None:
    run = _run(tmp_path, exit_codes=[130, 130], logs=[tmp_path / "a", tmp_path / "b"],
               signal=signal.SIGINT)
    assert not run.ok and run.exit_code == 130
    assert run.problems() == ["hpo: stopped by SIGINT; running trials were re-queued; run the "
                              "same command again to resume"]
