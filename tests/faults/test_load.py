"""Many workers at once: 8 worker processes plus ``hpo dashboard`` (polled over HTTP) on
one SQLite file, and 16 worker processes on PostgreSQL. Every trial is recorded (exactly the
budget), no worker errs, SQLite never reports "database is locked", and the PostgreSQL
connections stay bounded by workers x pool limit. ``-s`` prints the figures;
``bench/fault_load_report.py`` runs the same scenarios.
"""

from __future__ import annotations

from pathlib import Path

from tests.faults.conftest import needs_postgres
from tests.faults.harness import PG_URL, postgres_load, sqlite_load


def test_eight_workers_and_a_dashboard_on_one_sqlite_file(tmp_path: Path) -> None:
    r = sqlite_load(tmp_path, workers=8, n_trials=48, trial_s=0.2)
    print(f"\nSQLite, {r['workers']} workers + dashboard: {r['finished']}/{r['budget']} trials "
          f"in {r['elapsed_s']:.1f} s ({r['trials_per_s']:.1f} trials/s), "
          f"{r['discarded']} over-budget asks discarded, {r['locked']} 'database is locked', "
          f"{r['dashboard_polls']} dashboard polls ({len(r['dashboard_errors'])} failed, "
          f"last saw {r['dashboard_last_seen']} trials)")
    assert r["exit_codes"] == [0] * 8
    assert r["locked"] == 0 and r["tracebacks"] == 0
    assert r["finished"] == r["budget"]  # check_study has verified the rest
    assert r["dashboard_polls"] > 0 and r["dashboard_errors"] == []


@needs_postgres
def test_sixteen_workers_on_postgresql_keep_connections_bounded(tmp_path: Path) -> None:
    r = postgres_load(PG_URL, tmp_path, workers=16, n_trials=48, trial_s=0.05)
    print(f"\nPostgreSQL, {r['workers']} workers: {r['finished']}/{r['budget']} trials in "
          f"{r['elapsed_s']:.1f} s ({r['trials_per_s']:.1f} trials/s), peak "
          f"{r['peak_connections']} server connections (bound {r['connection_bound']} = "
          f"{r['workers']} x pool limit {r['pool_limit']}), {r['errors']} worker errors")
    assert r["exit_codes"] == [0] * 16
    assert r["errors"] == 0 and r["tracebacks"] == 0 and r["poll_errors"] == []
    assert r["finished"] == r["budget"]
    assert 0 < r["peak_connections"] <= r["connection_bound"]
