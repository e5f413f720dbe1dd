"""``hpo reproduce section3``: the paper's Section 3 as a probe study, then its report.

Builds the study (:mod:`hpo.config.section3`), creates it (idempotent: a re-run resumes),
runs N local workers as ``hpo run`` does, and writes the report
(:mod:`hpo.analysis.section3`): a table on stdout (or, with ``--json``, only one JSON
object), and CSV and HTML files in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="reproduce a result of the paper as a study",
                       description="Reproduce a measurement of Bertoin et al. (NeurIPS "
                       "2021) through the study service (workers, resume, dashboard, export).")
    what = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", parser_class=type(p))
    what.required = True
    s3 = what.add_parser(
        "section3", help="bifurcation volume of MNIST MLPs (depth, width, batch sweeps)",
        description="Section 3: fc nets on MNIST (ToTensor inputs, all 60000 training images, "
        "one epoch without updates); the fraction of inits whose first-layer gradients "
        "differ bitwise between ReLU'(0) = 0 and 1, for depth in {1,2,3,5,6}, width in "
        "{16,...,1024} and batch size in {16,...,1024}, at float16, float32 and float64, "
        "beside the paper's counts. A re-run of the same command resumes the study.")
    s3.add_argument("--inits", type=_int, metavar="K",
                    help="initialisations per cell (default 100; --quick: 10)")
    s3.add_argument("--quick", action="store_true",
                    help="7 of the 13 cells (each sweep's ends and middle) and 10 inits: a "
                    "sanity run of minutes on 2 CPU cores")
    s3.add_argument("--workers", type=_int, default=1, metavar="N",
                    help="local worker processes (default 1); CPU threads are split")
    s3.add_argument("--storage", metavar="URL",
                    help="study storage (default: $HPO_STORAGE or the project's "
                    "storage/hpo.db)")
    s3.add_argument("--precisions", nargs="+", metavar="P",
                    help="a subset of float16 float32 float64 (default: all three)")
    s3.add_argument("--train-subset", type=_int, metavar="N",
                    help="only the first N training images: smoke tests, NOT the paper's "
                    "protocol (default: all 60000)")
    s3.add_argument("--out", metavar="DIR", default="results",
                    help="folder for the CSV and HTML report (default: results)")
    s3.add_argument("--data-dir", metavar="DIR", help="dataset folder (default: $HPO_DATA_DIR)")
    s3.add_argument("--log-dir", metavar="DIR", help="worker logs (default: logs/<study>)")
    s3.add_argument("--json", action="store_true",
                    help="print only one JSON object (cells and platform) on stdout")
    s3.set_defaults(handler=_section3)


def _section3(args: argparse.Namespace) -> int:
    from hpo.analysis.section3 import build_report, format_text, write_report
    from hpo.config.section3 import PRECISIONS, plan, section3_config
    from hpo.engine.numerics.platform import platform_record
    from hpo.errors import UsageError
    from hpo.storage.rdb import make_storage
    from hpo.storage.urls import mask_url, resolve_storage_url
    from hpo.study.create import create_study
    from hpo.worker.pool import check_data, run_local

    if args.workers < 1:
        raise UsageError(f"--workers {args.workers} is not allowed: an integer >= 1; "
                         "fix: e.g. --workers 2.")
    p = plan(inits=args.inits, quick=args.quick, train_subset=args.train_subset,
             precisions=tuple(args.precisions or PRECISIONS))
    url = resolve_storage_url(None, args.storage)
    cfg = section3_config(p, url)
    make_storage(url).engine.dispose()  # unreachable: fail before a possible download
    check_data(cfg, args.data_dir)
    study = create_study(cfg, url)  # by URL: its messages show the URL as given
    log_dir = args.log_dir or str(Path("logs") / cfg.name)
    print(f"study {cfg.name} in {mask_url(url)}: {cfg.n_trials} trials ({len(p.cells())} "
          f"cells x {len(p.precisions)} precisions x {cfg.probe.inits}-init slices), "
          f"{args.workers} workers (logs in {log_dir})", file=sys.stderr)
    outcome = run_local(cfg.name, url, args.workers, log_dir=log_dir, data_dir=args.data_dir,
                        debug=args.debug)
    # The workers' own record when they stored one on their trials, else this process's.
    report = build_report(study, p, platform=platform_record())
    paths = write_report(report, args.out)
    if args.json:
        payload = {**report.to_dict(), "storage": mask_url(url),
                   "elapsed_s": round(outcome.elapsed_s, 3),
                   "files": [str(path) for path in paths]}
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
    else:
        for line in format_text(report):
            print(line)
        print(f"elapsed {outcome.elapsed_s:.1f} s; wrote " + ", ".join(map(str, paths)))
    if outcome.signal is not None:
        print(f"hpo: stopped by {signal.Signals(outcome.signal).name}; run the same command "
              "again to resume", file=sys.stderr)
        return 128 + outcome.signal
    failed = [i for i, code in enumerate(outcome.exit_codes) if code != 0]
    for index in failed:
        print(f"hpo: error: worker {index} exited with {outcome.exit_codes[index]}; see "
              f"{outcome.logs[index]}", file=sys.stderr)
    return 1 if failed else 0


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
