"""Study throughput: the quickstart study with 2 local workers against 1, side by side.

    python bench/study_throughput.py [--quick] [--config FILE] [--n-trials N] [--workers 1 2]

Each worker count runs ``python -m hpo run CONFIG --workers K`` on its own fresh SQLite
file (``hpo run`` gives each of the K workers cpus // K torch threads) and the throughput
is finished trials per second of *study time*: from the first trial's start to the last
trial's end, read from the storage, so the workers' process start-up (imports, data
loading) does not count. The process wall time is printed next to it. Target on a 2-core
machine: 2 workers >= 1.7x the throughput of 1 worker. The machine must be otherwise idle.

A third run (skip it with ``--no-bound``) confines one worker to one core with ``taskset``:
it measures what the second core gives one worker, s. Two workers of one thread each can
be at most 2/s times one worker of two threads; the run prints that bound next to the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from _timing import Check, machine_header, print_checks

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.7


def run_study(
    config: Path, workers: int, n_trials: int, tmp: Path, one_core: bool = False
) -> dict[str, float]:
    tag = f"{workers}{'-one-core' if one_core else ''}"
    url = f"sqlite:///{tmp / f'throughput-{tag}.db'}"
    env = dict(os.environ)
    env.pop("HPO_STORAGE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    started = time.perf_counter()
    # taskset: the process (and the workers it starts) see one CPU, so `hpo run` gives the
    # worker one thread.
    prefix = ["taskset", "-c", "0"] if one_core else []
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "hpo", "--quiet", "run", str(config),
         "--workers", str(workers), "--n-trials", str(n_trials), "--storage", url,
         "--log-dir", str(tmp / f"logs-{tag}")],
        cwd=tmp, env=env, capture_output=True, text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"hpo run --workers {workers} failed ({proc.returncode}):\n{proc.stderr}")
    (summary,) = optuna.get_all_study_summaries(url)
    trials = optuna.load_study(study_name=summary.study_name, storage=url).get_trials()
    done = [t for t in trials if t.datetime_complete is not None and t.state.name != "FAIL"]
    span = (max(t.datetime_complete for t in done)
            - min(t.datetime_start for t in done)).total_seconds()
    train_s = sum(t.user_attrs.get("wall_time_s", 0.0) for t in done)
    return {"trials": len(done), "span_s": span, "wall_s": wall, "train_s": train_s,
            "per_s": len(done) / span}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "study_configs/quickstart.yaml")
    parser.add_argument("--n-trials", type=int, default=None,
                        help="search trials per run (default 24; --quick 4)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="a small sanity run")
    parser.add_argument("--no-bound", dest="bound", action="store_false",
                        help="skip the 1-worker-on-1-core run that measures the bound")
    args = parser.parse_args()
    n_trials = args.n_trials or (4 if args.quick else 24)
    if not os.environ.get("HPO_DATA_DIR"):
        print("note: HPO_DATA_DIR is not set; the engine looks in its cache", file=sys.stderr)
    print(machine_header(threads=0).replace("torch threads 0", "torch threads cpus // workers"))
    results = {}
    with tempfile.TemporaryDirectory(prefix="hpo-throughput-") as tmp:
        for workers in args.workers:
            results[workers] = run_study(args.config.resolve(), workers, n_trials, Path(tmp))
            r = results[workers]
            print(f"{workers} worker(s): {r['trials']} trials in {r['span_s']:.1f} s of study "
                  f"time ({r['per_s']:.3f} trials/s; {r['train_s'] / r['trials']:.2f} s "
                  f"training per trial; process wall {r['wall_s']:.1f} s)", flush=True)
        single = None
        if args.bound and 1 in results and 2 in results and shutil.which("taskset"):
            single = run_study(args.config.resolve(), 1, n_trials, Path(tmp), one_core=True)
    base = results[args.workers[0]]
    checks = []
    for workers in args.workers[1:]:
        ratio = results[workers]["per_s"] / base["per_s"]
        wall_ratio = (base["wall_s"] / base["trials"]) / (
            results[workers]["wall_s"] / results[workers]["trials"])
        checks.append(Check(f"throughput {workers} vs {args.workers[0]} workers", ratio,
                            TARGET if workers == 2 else None, at_least=True,
                            note=f"{wall_ratio:.2f}x by process wall time"))
    if single is not None:
        # What one worker gains from the second core bounds what a second worker can add:
        # with per-trial speed-up s from 2 threads, 2 workers of 1 thread can be at most 2/s
        # times one worker of 2 threads.
        gain = results[1]["per_s"] / single["per_s"]
        print(f"1 worker on 1 core: {single['trials']} trials in {single['span_s']:.1f} s "
              f"({single['per_s']:.3f} trials/s; {single['train_s'] / single['trials']:.2f} s "
              "training per trial)")
        bound = 2 / gain
        ratio = results[2]["per_s"] / results[1]["per_s"]
        checks.append(Check("1 worker: 2 threads vs 1 thread (speed-up s)", gain, None,
                            note="what the 2nd core gives one worker"))
        checks.append(Check("bound on 2 vs 1 workers: 2/s", bound, None,
                            note=f"measured ratio is {ratio / bound:.0%} of it"))
    print()
    failed = print_checks(checks)
    print(f"\n{failed} target(s) missed" if failed else "\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
