"""A real ``hpo worker`` process whose training is a fake (a test fixture, run as a script).

    python tests/faults/_worker.py [--trial-seconds S] [--mode ok|nan|oom] [--max-pages N] \
        [--marker-dir DIR] [--gate FILE [--gate-after N]] -- WORKER ARGS...

It runs ``hpo.cli.main(["worker", *WORKER_ARGS])``, so argument parsing, logging, signal
handling, error lines and exit codes are the real ones; only the training function is
replaced, through the ``train_fn`` argument that :func:`hpo.worker.pool.open_worker`
offers for tests and benchmarks. ``--max-pages N`` caps every SQLite connection at N pages
(``PRAGMA max_page_count``): writes past it fail with SQLITE_FULL, as on a full disk.
``--marker-dir DIR``: the file DIR/<pid> says which run the process is in (see FakeTrain).
``--gate FILE``: each run, past the first ``--gate-after`` ones, waits at its end until FILE
exists (see FakeTrain).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import hpo.worker.pool as pool  # noqa: E402
from hpo.cli import main  # noqa: E402
from tests.faults._fake import FakeTrain  # noqa: E402


def _cap_sqlite_pages(pages: int) -> None:
    import sqlalchemy

    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "connect")
    def _cap(dbapi_connection, _record) -> None:  # noqa: ANN001 - SQLAlchemy's signature
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trial-seconds", type=float, default=0.5)
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--max-pages", type=int)
    parser.add_argument("--marker-dir", type=Path)
    parser.add_argument("--gate", type=Path)
    parser.add_argument("--gate-after", type=int, default=0)
    parser.add_argument("worker_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.max_pages:
        _cap_sqlite_pages(args.max_pages)
    marker = None if args.marker_dir is None else args.marker_dir / str(os.getpid())
    fake = FakeTrain(args.trial_seconds, args.mode, marker, args.gate, args.gate_after)
    pool.open_worker = functools.partial(pool.open_worker, train_fn=fake)
    worker_args = [a for a in args.worker_args if a != "--"]
    return main(["worker", *worker_args])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
