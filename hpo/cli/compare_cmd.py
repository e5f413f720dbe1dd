"""``hpo compare STUDY [--against OTHER]``: tuned kink derivatives against PyTorch's defaults.

Parsing and printing only: :func:`hpo.analysis.api.compare` reads the studies, computes the
statistics (:mod:`hpo.analysis.compare`) and writes the files (:mod:`hpo.analysis.report`).
"""

from __future__ import annotations

import argparse
import json
import sys

from hpo.cli.base import STORAGE_HELP, Command, positive_int

__all__ = ["Compare", "register"]


class Compare(Command):
    help = "tuned ReLU'(0) vs PyTorch's default: paired statistics and a report"
    description = (
        "Per group (model, dataset, precision, activation): baseline accuracy, best tuned "
        "accuracy, the paired difference tuned minus default with a bootstrap 95% CI and a "
        "paired test, and a verdict. With --against, the accuracy distributions of the two "
        "studies. Writes DIR/compare_<study>.csv and .html; on the study page (hpo dashboard) "
        "draws the paired difference and the kink hits per trial, saves the verdicts as the "
        "study's note and the HTML report as a study artifact: a re-run replaces all three."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        p = parser
        p.add_argument("study", metavar="STUDY", help="study name or study YAML file")
        p.add_argument("--against", metavar="OTHER_STUDY",
                       help="another study (name or YAML file; its storage is resolved like "
                       "STUDY's), e.g. the same search with ReLU'(0) fixed at 0")
        p.add_argument("--output", "-o", metavar="DIR", default="results",
                       help="folder for the CSV and HTML files (default: results)")
        p.add_argument("--storage", metavar="URL", help=STORAGE_HELP + "; also used for --against")
        p.add_argument("--seed", type=int, default=0, metavar="S",
                       help="seed of the bootstrap resampling (default 0)")
        p.add_argument("--resamples", type=positive_int, default=10_000, metavar="N",
                       help="bootstrap resamples (default 10000)")
        p.add_argument("--metric", choices=("test_accuracy", "val_accuracy"),
                       default="test_accuracy",
                       help="accuracy compared (default test_accuracy; the best trial is "
                       "always chosen by the study's objective)")
        p.add_argument("--artifacts", metavar="DIR",
                       help="artifact folder the HTML report is uploaded to (default: "
                       "$HPO_ARTIFACT_DIR, artifacts/ beside a SQLite file, else "
                       "storage/artifacts); hpo dashboard serves the same folder")
        p.add_argument("--no-publish", action="store_true",
                       help="write only the local files: no study note, no artifact, no "
                       "metric name")
        p.add_argument("--json", action="store_true",
                       help="print only one JSON object (groups, verdicts, notes, files)")
        p.add_argument("--best-per", metavar="PARAM",
                       help="only print the best trial per value of PARAM (e.g. "
                       "relu_prime_zero in a grid over relu_prime_zero x lr: the paper's "
                       "Section 4.3)")

    def take_action(self, args: argparse.Namespace) -> int:
        from hpo.analysis.api import best_per, compare
        from hpo.analysis.report import format_text
        from hpo.storage.urls import mask_url

        if args.best_per:
            table = best_per(args.study, args.best_per, storage=args.storage)
            print(table.to_string(index=False))
            return 0
        result = compare(args.study, storage=args.storage, against=args.against,
                         metric=args.metric, seed=args.seed, n_resamples=args.resamples,
                         output=args.output, publish_report=not args.no_publish,
                         artifacts=args.artifacts)
        if args.json:
            done = result.published
            json.dump({**result.comparison.to_dict(), "storage": mask_url(result.url),
                       "files": [str(path) for path in result.files],
                       "published": None if done is None else done.to_dict()}, sys.stdout)
            print()
            return 0
        print(f"storage {mask_url(result.url)}")
        for line in format_text(result.comparison):
            print(line)
        for path in result.files:
            print(f"wrote {path}")
        if result.published is not None:
            done = result.published
            how = "replaced" if done.replaced else "new"
            print(f"saved the verdicts as the study's note, {len(done.graph_object_ids)} charts "
                  f"on the study page and {result.files[-1].name} as study artifact "
                  f"{done.artifact_id} ({how}) in {done.artifact_dir}/")
        return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``compare`` to ``sub`` (for a parser of its own, e.g. in tests)."""
    Compare().register(sub, "compare")
