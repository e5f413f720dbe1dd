"""Tuned kink derivatives against PyTorch's defaults, read from a study's trials.

Per group (model, dataset, precision, activation): the baseline accuracy, the best tuned
trial, and the paired difference tuned minus default (tuned accuracies averaged per default
run first), bitwise-identical pairs, kink hits (one line when none at all) and parameter
importances on the paired differences (only with enough differing pairs); optionally against
a second study. Reads studies through Optuna only; the statistics are in
:mod:`hpo.analysis.stats`.
See docs/design.md#comparing-tuned-derivatives-with-pytorchs-defaults.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpo.analysis.hints import no_kink_line
from hpo.analysis.platforms import platform_notes
from hpo.analysis.stats import (
    MIN_N,
    PairedResult,
    TwoSampleResult,
    iqr,
    paired_comparison,
    two_sample_comparison,
)
from hpo.analysis.trials import GroupKey, Pair, TrialRecord, group_label, pair_trials, read_trials
from hpo.config import StudyConfig
from hpo.errors import HpoError

__all__ = [
    "MIN_DIFFERING_PAIRS",
    "AgainstRow",
    "GroupSummary",
    "NothingToCompareError",
    "StudyComparison",
    "compare_study",
    "differs",
    "param_importances",
]

logger = logging.getLogger(__name__)

_WHAT = {"relu": "ReLU'(0)", "leaky_relu": "LeakyReLU'(0)"}
# Importances need this many pairs whose runs differ (the paired verdict's own minimum).
MIN_DIFFERING_PAIRS = MIN_N


class NothingToCompareError(HpoError):
    """Raised when a study has no completed trial to compare (exit code 1)."""


@dataclass(frozen=True)
class GroupSummary:
    """One row of the comparison (accuracies in %, differences in pp)."""

    group: GroupKey
    n_complete: int
    n_pruned: int  # pruned by the pruner, diverged runs not included
    n_diverged: int
    n_failed: int
    n_baseline: int
    baseline_mean: float
    baseline_std: float
    n_tuned: int
    best_tuned_accuracy: float
    best_tuned_trial: int | None
    best_relu_prime_zero: float
    n_pairs: int
    n_identical_pairs: int  # same params_sha256 as the partner
    paired: PairedResult
    kink_rate_mean: float
    kink_rate_per_sample: bool
    kink_hits_per_trial: float  # mean recorded kink_hits of the completed trials


@dataclass(frozen=True)
class AgainstRow:
    """Search-trial accuracies of the study (``a``) against the other study (``b``)."""

    group: str  # a group label, or "all"
    a: np.ndarray
    b: np.ndarray
    result: TwoSampleResult


@dataclass
class StudyComparison:
    """Everything :func:`compare_study` found; :mod:`hpo.analysis.report` writes it out."""

    study: str
    metric: str
    seed: int
    records: list[TrialRecord]
    pairs: list[Pair]
    groups: list[GroupSummary]
    importances: dict[str, float]
    importance_note: str | None
    searched_derivatives: tuple[str, ...]
    headline: str | None = None  # "ReLU'(0) changed nothing here: ..." when it did not
    no_kink: str | None = None  # hints.no_kink_line(...) when every kink-hit count is 0
    platform_warnings: list[str] = field(default_factory=list)
    platform_note: str | None = None
    other: str | None = None
    other_records: list[TrialRecord] = field(default_factory=list)
    against: list[AgainstRow] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per group: the CSV ``compare_<study>.csv``."""
        rows = []
        for g in self.groups:
            model, dataset, precision, activation = g.group
            rows.append({
                "model": model, "dataset": dataset, "precision": precision,
                "activation": activation, "metric": self.metric,
                "n_complete": g.n_complete, "n_pruned": g.n_pruned,
                "n_diverged": g.n_diverged, "n_failed": g.n_failed,
                "n_baseline": g.n_baseline, "baseline_mean_pct": g.baseline_mean,
                "baseline_std_pct": g.baseline_std, "n_tuned": g.n_tuned,
                "best_tuned_pct": g.best_tuned_accuracy, "best_tuned_trial": g.best_tuned_trial,
                "best_relu_prime_zero": g.best_relu_prime_zero, "n_pairs": g.n_pairs,
                "n_identical_pairs": g.n_identical_pairs,
                "n_units": g.paired.n, "mean_diff_pp": g.paired.mean_diff,
                "ci_low_pp": g.paired.ci_low, "ci_high_pp": g.paired.ci_high,
                "test": g.paired.test, "p_value": g.paired.p_value,
                "kink_rate_mean": g.kink_rate_mean,
                "kink_rate_unit": "per sample-epoch" if g.kink_rate_per_sample else "per trial",
                "kink_hits_per_trial": g.kink_hits_per_trial,
                "verdict": g.paired.verdict,
            })
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``hpo compare --json``): the groups as :meth:`table` rows (NaN as
        None), the headline, the no-kink line, importances and notes."""
        rows = self.table().astype(object)
        return {
            "study": self.study, "metric": self.metric, "seed": self.seed,
            "headline": self.headline, "no_kink": self.no_kink,
            "groups": rows.where(rows.notna(), None).to_dict("records"),
            "importances": self.importances, "importance_note": self.importance_note,
            "platform_warnings": self.platform_warnings, "platform_note": self.platform_note,
        }

    def against_table(self) -> pd.DataFrame:
        """One row per group shared with the other study, plus ``all``."""
        rows = []
        for row in self.against:
            r = row.result
            rows.append({
                "group": row.group, "study": self.study, "other": self.other,
                **_describe(row.a, "a_"), **_describe(row.b, "b_"),
                "median_diff_pp": r.median_diff, "median_ci_low_pp": r.median_ci[0],
                "median_ci_high_pp": r.median_ci[1], "iqr_diff_ci_low_pp": r.iqr_diff_ci[0],
                "iqr_diff_ci_high_pp": r.iqr_diff_ci[1], "mannwhitney_p": r.p_value,
                "verdict": r.verdict,
            })
        return pd.DataFrame(rows)


def _describe(x: np.ndarray, prefix: str) -> dict[str, float]:
    if x.size == 0:
        return {f"{prefix}n": 0}
    return {
        f"{prefix}n": int(x.size), f"{prefix}best_pct": float(x.max()),
        f"{prefix}median_pct": float(np.median(x)), f"{prefix}iqr_pp": float(iqr(x)),
        f"{prefix}std_pp": float(x.std(ddof=1)) if x.size > 1 else float("nan"),
    }


def compare_study(
    study: optuna.Study,
    cfg: StudyConfig,
    *,
    against: tuple[optuna.Study, StudyConfig] | None = None,
    metric: str = "test_accuracy",
    seed: int = 0,
    n_resamples: int = 10_000,
) -> StudyComparison:
    """Compare a study's tuned trials with their default-derivative partners.

    Args:
        study: the study (loaded with :func:`hpo.study.create.load_study`).
        cfg: its stored config.
        against: another study and its config, compared distribution against distribution.
        metric: ``test_accuracy`` (default; the best trial is still chosen by the
            objective) or ``val_accuracy``.
        seed: seeds every bootstrap.
        n_resamples: bootstrap resamples.

    Raises:
        NothingToCompareError: the study (or the other one) has no completed trial.
    """
    records, used = read_trials(study, cfg, metric)
    _require_complete(study.study_name, records)
    other_records: list[TrialRecord] = []
    if against is not None:
        other_records, other_used = read_trials(against[0], against[1], used)
        _require_complete(against[0].study_name, other_records)
        if other_used != used:  # one lacks test accuracies: compare both on validation
            records, used = read_trials(study, cfg, other_used)
    pairs = pair_trials(records)
    maximize = study.direction == StudyDirection.MAXIMIZE
    searched = tuple(n for n in ("relu_prime_zero", "relu6_prime_six") if n in cfg.search_space)
    groups = [
        _summarise(key, recs, [p for p in pairs if p.group == key], searched, maximize,
                   seed, n_resamples)
        for key, recs in sorted(_by_group(records).items())
    ]
    importances, note = param_importances(study, pairs, maximize=maximize)
    if importances:
        note = _importance_caveat(groups, note)
    result = StudyComparison(study.study_name, used, seed, records, pairs, groups, importances,
                             note, searched, headline=_headline(pairs, records, searched),
                             no_kink=_no_kink(records))
    # Printed with the result (format_text, the HTML report, the note), not logged twice.
    result.platform_warnings, result.platform_note = platform_notes(records, pairs)
    if against is not None:
        result.other = against[0].study_name
        result.other_records = other_records
        result.against = _against(records, other_records, study.study_name, result.other,
                                  seed, n_resamples)
    return result


def _headline(
    pairs: list[Pair], records: list[TrialRecord], searched: tuple[str, ...]
) -> str | None:
    """The plain sentence for a study where every pair is bitwise identical."""
    if not pairs or not all(p.identical for p in pairs):
        return None
    activations = {r.group[3] for r in records}
    what = _what(activations.pop(), searched) if len(activations) == 1 else "the derivative"
    n = len(pairs)
    return f"{what} changed nothing here: {n}/{n} pairs bitwise identical"


def _no_kink(records: list[TrialRecord]) -> str | None:
    """:func:`hints.no_kink_line` when every completed trial recorded 0 kink hits."""
    hits = [r.kink_hits for r in records if r.complete]
    if not hits or any(h is None or h != 0 for h in hits):
        return None
    return no_kink_line(f"these {len(hits)} completed trials")


def _importance_caveat(groups: list[GroupSummary], note: str | None) -> str | None:
    """``note`` plus a caveat naming the groups whose verdict is "insufficient evidence"."""
    thin = [group_label(g.group) for g in groups
            if g.paired.verdict.startswith("insufficient evidence")]
    if not thin:
        return note
    caveat = (f"caveat: the paired test found insufficient evidence in {', '.join(thin)}; "
              "these importances say how the paired differences vary with each parameter, "
              "not that ReLU'(0) has an effect there")
    return f"{note}; {caveat}" if note else caveat


def differs(p: Pair) -> bool:
    """The pair's two runs differ: other weights, or (no fingerprint) other accuracies."""
    if p.identical is None:
        return abs(p.difference) > 1e-9
    return not p.identical


def _require_complete(name: str, records: list[TrialRecord]) -> None:
    if not any(r.complete for r in records):
        counts = Counter(r.state.name for r in records)
        found = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "none"
        raise NothingToCompareError(
            f"study {name!r} has no completed trials yet (finished trials: {found}); nothing "
            f"to compare; fix: run workers first (hpo worker --study {name})."
        )


def _by_group(records: list[TrialRecord]) -> dict[GroupKey, list[TrialRecord]]:
    out: dict[GroupKey, list[TrialRecord]] = defaultdict(list)
    for r in records:
        out[r.group].append(r)
    return out


def _what(activation: str, searched: tuple[str, ...]) -> str:
    if activation == "relu6":
        names = {"relu_prime_zero": "ReLU6'(0)", "relu6_prime_six": "ReLU6'(6)"}
        return " and ".join(names[n] for n in searched) or "ReLU6'(0)"
    return _WHAT.get(activation, "the kink derivative")


def _summarise(
    key: GroupKey, recs: list[TrialRecord], pairs: list[Pair], searched: tuple[str, ...],
    maximize: bool, seed: int, n_resamples: int,
) -> GroupSummary:
    complete = [r for r in recs if r.complete]
    pruned = [r for r in recs if r.state == TrialState.PRUNED]
    baseline = [r.accuracy for r in complete if r.baseline and r.twin_of is None]
    if not baseline:  # paired mode only: the twins are the baseline runs
        baseline = [r.accuracy for r in complete if r.baseline]
    tuned = [r for r in complete if r.tuned and r.value is not None]
    sign = 1.0 if maximize else -1.0
    best = max(tuned, key=lambda r: (sign * r.value, -r.number), default=None)
    # Several tuned trials may share one default run: average them per default run.
    by_default: dict[int, list[Pair]] = defaultdict(list)
    for p in pairs:
        by_default[p.default].append(p)
    units = sorted(by_default.items())
    t_acc = [float(np.mean([p.tuned_accuracy for p in ps])) for _, ps in units]
    d_acc = [ps[0].default_accuracy for _, ps in units]
    unit = "pairs" if len(units) == len(pairs) else f"default runs ({len(pairs)} pairs)"
    paired = paired_comparison(t_acc, d_acc, what=_what(key[3], searched), unit=unit,
                               n_resamples=n_resamples, seed=seed)
    rates = [r.kink_rate for r in recs if r.kink_rate is not None]
    hits = [r.kink_hits for r in complete if r.kink_hits is not None]
    return GroupSummary(
        group=key,
        n_complete=len(complete),
        n_pruned=sum(not r.diverged for r in pruned),
        n_diverged=sum(r.diverged for r in recs),
        n_failed=sum(r.state == TrialState.FAIL for r in recs),
        n_baseline=len(baseline),
        baseline_mean=float(np.mean(baseline)) if baseline else float("nan"),
        baseline_std=float(np.std(baseline, ddof=1)) if len(baseline) > 1 else float("nan"),
        n_tuned=len(tuned),
        best_tuned_accuracy=best.accuracy if best else float("nan"),
        best_tuned_trial=best.number if best else None,
        best_relu_prime_zero=best.relu_prime_zero if best else float("nan"),
        n_pairs=len(pairs),
        n_identical_pairs=sum(bool(p.identical) for p in pairs),
        paired=paired,
        kink_rate_mean=float(np.mean(rates)) if rates else float("nan"),
        kink_rate_per_sample=any(r.kink_rate_per_sample for r in recs),
        kink_hits_per_trial=float(np.mean(hits)) if hits else float("nan"),
    )


def _against(
    a: list[TrialRecord], b: list[TrialRecord], name_a: str, name_b: str, seed: int,
    n_resamples: int,
) -> list[AgainstRow]:
    def accs(recs: list[TrialRecord], key: GroupKey | None = None) -> np.ndarray:
        return np.array([r.accuracy for r in recs if r.complete and r.search
                         and (key is None or r.group == key)], dtype=float)

    keys = sorted({r.group for r in a if r.complete} & {r.group for r in b if r.complete})
    rows = []
    for label, key in [(group_label(k), k) for k in keys] + [("all", None)]:
        xa, xb = accs(a, key), accs(b, key)
        result = two_sample_comparison(xa, xb, names=(name_a, name_b), seed=seed,
                                       n_resamples=n_resamples)
        rows.append(AgainstRow(label, xa, xb, result))
    return rows


def param_importances(
    study: optuna.Study, pairs: list[Pair], *, maximize: bool = True
) -> tuple[dict[str, float], str | None]:
    """Optuna's parameter importances for the paired difference *tuned minus default*.

    A scratch in-memory study holds one trial per pair, with the tuned trial's parameters and
    the pair's difference (pp) as its value, so the seed noise between differently seeded
    trials, which both runs of a pair share, is not credited to ReLU'(0). ReLU'(0)'s
    importance is then how much of the variation of its own effect it explains; another
    parameter's is how much ReLU'(0)'s effect depends on it.

    Returns:
        ``(importances, note)``: an empty dict and a note saying why when they are not
        computed (no pairs, every pair bitwise identical, fewer than
        :data:`MIN_DIFFERING_PAIRS` differing pairs, constant differences); otherwise the
        note says how many pairs differ (and that one parameter is trivially 1).
    """
    if not pairs:
        return {}, "not computed: no tuned trial has a default-derivative partner"
    if all(p.identical for p in pairs):
        return {}, (f"not computed: all {len(pairs)} pairs are bitwise identical, so there "
                    "is no effect to attribute to any parameter")
    n_differ = sum(differs(p) for p in pairs)
    counted = f"{n_differ} of {len(pairs)} pairs differ"
    if n_differ < MIN_DIFFERING_PAIRS:
        return {}, (f"not computed: only {counted} (tuned and default runs not bitwise "
                    f"identical); need at least {MIN_DIFFERING_PAIRS} differing pairs")
    diffs = [p.difference for p in pairs]
    if max(diffs) - min(diffs) < 1e-9:
        return {}, f"not computed: every paired difference is {diffs[0]:+.2f} pp"
    tuned = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    trials = [
        optuna.trial.create_trial(params=tuned[p.tuned].params,
                                  distributions=tuned[p.tuned].distributions, value=p.difference)
        for p in pairs if p.tuned in tuned
    ]
    names = {n for t in trials for n in t.params}
    if not names:
        return {}, "not computed: the study searches no parameter"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        scratch = optuna.create_study(direction="maximize" if maximize else "minimize",
                                      study_name="paired-differences")
    finally:
        optuna.logging.set_verbosity(verbosity)
    scratch.add_trials(trials)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna warns on tiny or constant samples
            imp = optuna.importance.get_param_importances(scratch)
    except ImportError as exc:  # Optuna < 5's default evaluator (fANOVA) needs scikit-learn
        return {}, (f"not computed: Optuna {optuna.__version__}'s importance evaluator needs "
                    f"the module {exc.name!r} (pip install scikit-learn)")
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return {}, f"not computed: {exc}"
    imp = {k: float(v) for k, v in imp.items()}
    if len(names) == 1:
        return imp, f"{counted}; only one searched parameter: its importance is 1 by definition"
    return imp, f"from {len(pairs)} pairs, {counted}"
