"""Fault and load figures of the study service: killed workers, SQLite and PostgreSQL load.

    python bench/fault_load_report.py [--quick] [--postgres URL] [--seed N] [--skip-kills]

Runs the scenarios of ``tests/faults`` (tests/faults/harness.py) and prints what was
observed, for the report:

* kills: 3 workers, 3 SIGKILLs at seeded random moments in the middle of a trial (SQLite,
  and PostgreSQL in paired mode); per kill, seconds until the lost trial was failed by the
  heartbeat check (grace 3 s, interval 1 s) and until its same-parameter copy started.
* SQLite load: 8 worker processes plus ``hpo dashboard`` polled over HTTP, one file:
  trials/s, "database is locked" lines in the worker logs, dashboard polls and failures.
* PostgreSQL load: 16 worker processes: trials/s and the peak number of server connections
  they hold (``pg_stat_activity``), against the bound workers x pool limit.

Workers are real ``hpo worker`` processes with the training replaced by a sleep (the trial
time is ``--trial-seconds``), so the figures are the service's, not the engine's. Every
scenario also checks the study: exactly the budget finished, nothing left RUNNING, no
baseline or twin twice; a violation stops the script with an error.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", metavar="URL",
                        default=os.environ.get("HPO_TEST_POSTGRES_URL"),
                        help="PostgreSQL URL (default $HPO_TEST_POSTGRES_URL; none: skipped)")
    parser.add_argument("--quick", action="store_true", help="smaller studies")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--skip-kills", action="store_true")
    parser.add_argument("--trial-seconds", type=float, default=None,
                        help="simulated training time per load trial (default 0.2 SQLite, "
                        "0.05 PostgreSQL)")
    args = parser.parse_args()

    from hpo.storage.urls import mask_url
    from tests.faults import harness as h

    scale = 1 if args.quick else 2
    print(f"machine: {os.cpu_count()} logical CPUs, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="hpo-faults-") as tmp:
        work = Path(tmp)
        if not args.skip_kills:
            runs = [("sqlite", f"sqlite:///{work / 'kills.db'}", False)]
            if args.postgres:
                runs.append(("postgresql", args.postgres, True))
            for label, url, paired in runs:
                sub = work / f"kills-{label}"
                sub.mkdir()
                r = h.kill_scenario(url, sub, workers=3, kills=3, seed=args.seed,
                                    trial_s=1.0, n_trials=7 if paired else 12,
                                    seeds=0 if paired else 2, paired=paired)
                mode = "paired twins" if paired else "2 fixed baselines"
                print(f"\nkills, {label} ({mode}): {len(r['kills'])} SIGKILLs of 3 workers, "
                      f"budget {r['budget']}: {r['finished']} finished (twins included), "
                      f"{r['lost']} lost trials re-run, {r['discarded']} asks discarded, "
                      f"{r['elapsed_s']:.1f} s, {r['trials_per_s']:.2f} trials/s, "
                      f"surviving workers' exit codes {r['exit_codes']}")
                for kill in r["kills"]:
                    if kill["lost_trial"] is None:
                        print(f"  kill at {kill['t']:5.1f} s: between two trials")
                        continue
                    print(f"  kill at {kill['t']:5.1f} s: trial {kill.get('lost_trial')} "
                          f"failed after {kill.get('failed_after_s', float('nan')):.1f} s, "
                          f"copy {kill.get('rerun')} started after "
                          f"{kill.get('rerun_started_after_s', float('nan')):.1f} s "
                          f"({kill.get('rerun_state')})")

        sub = work / "sqlite-load"
        sub.mkdir()
        r = h.sqlite_load(sub, workers=8, n_trials=48 * scale,
                          trial_s=args.trial_seconds or 0.2)
        print(f"\nSQLite load: {r['workers']} workers + hpo dashboard on one file: "
              f"{r['finished']}/{r['budget']} trials in {r['elapsed_s']:.1f} s = "
              f"{r['trials_per_s']:.1f} trials/s; 'database is locked': {r['locked']}; "
              f"worker exit codes {sorted(set(r['exit_codes']))}; dashboard: "
              f"{r['dashboard_polls']} polls, {len(r['dashboard_errors'])} failed")

        if args.postgres:
            sub = work / "pg-load"
            sub.mkdir()
            r = h.postgres_load(args.postgres, sub, workers=16, n_trials=64 * scale,
                                trial_s=args.trial_seconds or 0.05)
            print(f"\nPostgreSQL load ({mask_url(args.postgres)}): {r['workers']} workers: "
                  f"{r['finished']}/{r['budget']} trials in {r['elapsed_s']:.1f} s = "
                  f"{r['trials_per_s']:.1f} trials/s; peak {r['peak_connections']} server "
                  f"connections (bound {r['connection_bound']} = {r['workers']} x pool limit "
                  f"{r['pool_limit']}); worker errors {r['errors']}; exit codes "
                  f"{sorted(set(r['exit_codes']))}")
        else:
            print("\nPostgreSQL load: skipped (pass --postgres URL)")
    print("\n(wall-time figures include waiting for a CPU: 8-16 processes share this "
          f"machine's {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
