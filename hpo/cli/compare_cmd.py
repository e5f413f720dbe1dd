"""``hpo compare STUDY [--against OTHER]``: tuned kink derivatives against PyTorch's defaults.

Parsing and printing only: the statistics are in :mod:`hpo.analysis.compare`, the files are
written by :mod:`hpo.analysis.report`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]

_STORAGE_HELP = (
    "study storage URL (default: $HPO_STORAGE, the study file's storage:, or the project's "
    "storage/hpo.db); also used for --against"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="tuned ReLU'(0) vs PyTorch's default: paired statistics and a report",
        description="Per group (model, dataset, precision, activation): baseline accuracy, "
        "best tuned accuracy, the paired difference tuned minus default with a bootstrap "
        "95% CI and a paired test, and a verdict. With --against, the accuracy "
        "distributions of the two studies. Writes DIR/compare_<study>.csv and .html, saves "
        "the verdicts as the study's note and uploads the HTML report as a study artifact "
        "(both shown by hpo dashboard).",
    )
    p.add_argument("study", metavar="STUDY", help="study name or study YAML file")
    p.add_argument("--against", metavar="OTHER_STUDY",
                   help="another study (name or YAML file; its storage is resolved like "
                   "STUDY's), e.g. the same search with ReLU'(0) fixed at 0")
    p.add_argument("--output", "-o", metavar="DIR", default="results",
                   help="folder for the CSV and HTML files (default: results)")
    p.add_argument("--storage", metavar="URL", help=_STORAGE_HELP)
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the bootstrap resampling (default 0)")
    p.add_argument("--resamples", type=_positive_int, default=10_000, metavar="N",
                   help="bootstrap resamples (default 10000)")
    p.add_argument("--metric", choices=("test_accuracy", "val_accuracy"),
                   default="test_accuracy",
                   help="accuracy compared (default test_accuracy; the best trial is always "
                   "chosen by the study's objective)")
    p.add_argument("--artifacts", metavar="DIR",
                   help="artifact folder the HTML report is uploaded to (default: "
                   "$HPO_ARTIFACT_DIR, artifacts/ beside a SQLite file, else storage/artifacts); "
                   "hpo dashboard serves the same folder")
    p.add_argument("--no-publish", action="store_true",
                   help="write only the local files: no study note, no artifact, no metric name")
    p.add_argument("--best-per", metavar="PARAM",
                   help="only print the best trial per value of PARAM (e.g. relu_prime_zero "
                   "in a grid over relu_prime_zero x lr: the paper's Section 4.3)")
    p.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    from hpo.analysis.compare import compare_study
    from hpo.analysis.report import format_text, write_report
    from hpo.storage.urls import mask_url
    from hpo.worker.lookup import load_existing_study

    name, url = _study_ref(args.study, args.storage)
    if not (args.no_publish or args.best_per):
        from hpo.storage.artifacts import check_artifact_dir

        check_artifact_dir(url, args.artifacts)  # a bad folder: exit 2 before any work
    study, cfg = load_existing_study(name, url)
    if args.best_per:
        from hpo.analysis.best_per import best_per_value

        print(best_per_value(study, args.best_per).to_string(index=False))
        return 0
    against = None
    if args.against:
        other, other_url = _study_ref(args.against, args.storage)
        against = load_existing_study(other, other_url)
    comparison = compare_study(study, cfg, against=against, metric=args.metric,
                               seed=args.seed, n_resamples=args.resamples)
    print(f"storage {mask_url(url)}")
    for line in format_text(comparison):
        print(line)
    paths = write_report(comparison, args.output)
    for path in paths:
        print(f"wrote {path}")
    if not args.no_publish:
        from hpo.analysis.publish import publish

        done = publish(comparison, study, cfg, paths[-1], url, args.artifacts)
        print(f"saved the verdicts as the study's note and {paths[-1].name} as study artifact "
              f"{done.artifact_id} in {done.artifact_dir}/")
    return 0


def _study_ref(ref: str, storage_flag: str | None) -> tuple[str, str]:
    """A study name, or a study file (then its name and, without a flag, its storage)."""
    from hpo.storage.urls import resolve_storage_url

    if ref.endswith((".yaml", ".yml")) or Path(ref).is_file():
        from hpo.config.study import load_study_config

        cfg = load_study_config(ref)
        return cfg.name, resolve_storage_url(cfg.storage, storage_flag)
    return ref, resolve_storage_url(None, storage_flag)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value
