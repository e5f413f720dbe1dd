"""Shared helpers for the engine benchmarks: setup, machine description, result table.

Not a library: the ``bench/*.py`` scripts import it from their own folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The scripts run as ``python bench/<name>.py`` from anywhere: make the repository's
# ``hpo`` package importable without installing it.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
# Quiet the profiler's C++ log lines (activation_overhead.py's memory measurement).
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

import torch  # noqa: E402

_cpu_clock = False  # set by `setup` from --cpu-clock


def clock() -> float:
    """The clock every measurement reads: wall time, or with --cpu-clock this thread's CPU
    time (steadier while other jobs share the machine; one torch thread only)."""
    return time.thread_time() if _cpu_clock else time.perf_counter()


def using_cpu_clock() -> bool:
    return _cpu_clock


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="sanity run: fewer repeats")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--cpu-clock",
        action="store_true",
        help="measure the main thread's CPU time instead of wall time: steadier on a "
        "machine shared with other jobs, but only meaningful with --threads 1",
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("HPO_DATA_DIR"),
        help="folder with MNIST/raw/*.gz (default $HPO_DATA_DIR)",
    )


def setup(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Apply the common arguments: threads and clock."""
    global _cpu_clock
    if not args.data_dir:
        parser.error("set HPO_DATA_DIR or pass --data-dir (the folder holding MNIST/raw/*.gz)")
    if args.cpu_clock and args.threads != 1:
        parser.error("--cpu-clock measures one thread: use it with --threads 1")
    torch.set_num_threads(args.threads)
    _cpu_clock = args.cpu_clock


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_header(threads: int | None = None) -> str:
    """One block naming what the figures were measured on, and how.

    Args:
        threads: torch intra-op threads to name (default: the current setting).
    """
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    threads = torch.get_num_threads() if threads is None else threads
    what = "main-thread CPU time" if _cpu_clock else "wall time"
    return "\n".join(
        [
            f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, "
            f"ISA {torch.backends.cpu.get_cpu_capability()}, load average {load}",
            f"torch {torch.__version__}, python {platform.python_version()}, "
            f"torch threads {threads} (intra-op); clock: {what}",
        ]
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    """Min-max of the repeats, to see how noisy a median is."""
    if len(values) < 2:
        return ""
    return f"{min(values) * 1e3:.1f}-{max(values) * 1e3:.1f}"


@dataclass
class Check:
    """One compared figure: ``ratio`` against ``target`` (``<= target`` or ``>= target``)."""

    what: str
    ratio: float
    target: float | None = None  # None: informational only
    at_least: bool = False  # True: the ratio must be >= target
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        ok = self.ratio >= self.target if self.at_least else self.ratio <= self.target
        return "PASS" if ok else "FAIL"

    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'>=' if self.at_least else '<='} {self.target:g}x"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def print_checks(checks: list[Check]) -> int:
    """Print the ratio table; return the number of failed targets."""
    rows = [[c.what, f"{c.ratio:.3f}x", c.target_text(), c.verdict, c.note] for c in checks]
    print_table(["comparison", "ratio", "target", "result", "note"], rows)
    return sum(c.verdict == "FAIL" for c in checks)
