"""Pure statistics on plain arrays: bootstrap intervals, paired and two-sample tests, verdicts.

Nothing here knows about Optuna; accuracies are in percent, differences in percentage
points; every draw comes from a seeded generator. Percentile bootstrap intervals, the
Wilcoxon signed-rank test (the exact sign test for few or tied differences), Mann-Whitney U
for independent samples; a verdict needs the interval to exclude 0 and the test to reject.
See docs/design.md#statistics-bootstrap-intervals-tests-and-verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

__all__ = [
    "MIN_N",
    "MIN_WILCOXON",
    "PairedResult",
    "TwoSampleResult",
    "bootstrap_ci",
    "bootstrap_diff_ci",
    "iqr",
    "paired_comparison",
    "paired_test",
    "paired_verdict",
    "two_sample_comparison",
]

MIN_N = 5  # fewer pairs (or trials per sample) than this: "insufficient evidence"
MIN_WILCOXON = 6  # fewer non-zero differences: exact sign test instead of Wilcoxon
_ZERO = 1e-9  # |difference| below this is a tie at 0 (accuracies are k / n_test)
_BATCH = 1000  # resamples per vectorised call: bounds memory for long arrays

Stat = Callable[..., np.ndarray]  # numpy reduction taking ``axis=``


def iqr(values: Sequence[float] | np.ndarray, axis: int | None = None) -> np.ndarray:
    """Interquartile range (75th minus 25th percentile)."""
    q75, q25 = np.percentile(np.asarray(values, dtype=float), [75, 25], axis=axis)
    return q75 - q25


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Stat = np.mean,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over ``values`` (:func:`scipy.stats.bootstrap`).

    NaNs when empty; a single value is its own interval (every resample is that value).
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        point = float(stat(x))
        return point, point
    return _percentile_bootstrap((x,), stat, n_resamples, confidence, seed)


def bootstrap_diff_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    stat: Stat = np.median,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(a) - stat(b)`` for independent samples, each
    resampled on its own (NaNs when either is empty)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size == 0 or xb.size == 0:
        return float("nan"), float("nan")
    if xa.size == 1 and xb.size == 1:
        point = float(stat(xa) - stat(xb))
        return point, point
    # scipy wants two observations per sample; a lone value resamples to itself, so
    # repeating it changes nothing but the shape.
    xa, xb = (np.repeat(x, 2) if x.size == 1 else x for x in (xa, xb))

    def diff(sa: np.ndarray, sb: np.ndarray, axis: int = -1) -> np.ndarray:
        return stat(sa, axis=axis) - stat(sb, axis=axis)

    return _percentile_bootstrap((xa, xb), diff, n_resamples, confidence, seed)


def _percentile_bootstrap(
    data: tuple[np.ndarray, ...], stat: Stat, n_resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    res = sps.bootstrap(
        data, stat, n_resamples=n_resamples, batch=_BATCH, vectorized=True, paired=False,
        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_test(diffs: Sequence[float] | np.ndarray) -> tuple[str, float]:
    """Two-sided test that the paired differences are centred on 0.

    Returns:
        ``(test name, p-value)``: ``"Wilcoxon"`` or ``"sign test"`` (see the module notes);
        p = 1 when every difference is 0 or there are none.
    """
    d = np.asarray(diffs, dtype=float)
    nonzero = d[np.abs(d) > _ZERO]
    if nonzero.size == 0:
        return "sign test", 1.0
    ties = np.unique(np.round(np.abs(nonzero) / _ZERO)).size < nonzero.size
    if nonzero.size < MIN_WILCOXON or ties:
        k = int((nonzero > 0).sum())
        return "sign test", float(sps.binomtest(k, nonzero.size, 0.5).pvalue)
    return "Wilcoxon", float(sps.wilcoxon(nonzero, zero_method="wilcox").pvalue)


@dataclass(frozen=True)
class PairedResult:
    """Paired comparison of tuned and default runs (accuracy in %, differences in pp)."""

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    test: str
    p_value: float
    verdict: str


def paired_verdict(
    mean_diff: float,
    ci: tuple[float, float],
    test: str,
    p_value: float,
    n: int,
    *,
    what: str = "ReLU'(0)",
    unit: str = "pairs",
    alpha: float = 0.05,
) -> str:
    """A plain-language verdict that never claims more than the interval and the test do."""
    lo, hi = ci
    if n == 0:
        return (
            "no pairs: no tuned trial has a completed default-derivative run with the same "
            "seed and settings (use the paired baseline mode)"
        )
    stats_text = f"95% CI [{lo:+.2f}, {hi:+.2f}] pp, {test} p={p_value:.2g}, n={n} {unit}"
    if n < MIN_N:
        return (
            f"insufficient evidence: only {n} {unit} (need at least {MIN_N}); mean "
            f"difference {mean_diff:+.2f} pp ({stats_text})"
        )
    if lo <= 0 <= hi:
        return f"no evidence of a difference ({stats_text}; the CI includes 0)"
    if p_value >= alpha:
        return (
            f"inconclusive: mean difference {mean_diff:+.2f} pp, the CI excludes 0 but the "
            f"{test} does not reject at {alpha:g} ({stats_text})"
        )
    change = "improved" if lo > 0 else "lowered"
    return f"tuning {what} {change} accuracy by {mean_diff:+.2f} pp ({stats_text})"


def paired_comparison(
    tuned: Sequence[float] | np.ndarray,
    default: Sequence[float] | np.ndarray,
    *,
    what: str = "ReLU'(0)",
    unit: str = "pairs",
    n_resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedResult:
    """Tuned minus default, pair by pair: mean, bootstrap CI, paired test and verdict.

    Args:
        tuned: accuracy (%) of each tuned unit.
        default: accuracy (%) of its default-derivative partner, in the same order.
        what: the tuned hyperparameter, for the verdict.
        unit: what one pair is called in the verdict.
    """
    t, d0 = np.asarray(tuned, dtype=float), np.asarray(default, dtype=float)
    if t.shape != d0.shape:
        raise ValueError(f"tuned and default differ in length ({t.size} vs {d0.size})")
    diffs = t - d0
    mean = float(diffs.mean()) if diffs.size else float("nan")
    ci = bootstrap_ci(diffs, np.mean, n_resamples=n_resamples, seed=seed)
    test, p = paired_test(diffs)
    verdict = paired_verdict(mean, ci, test, p, diffs.size, what=what, unit=unit, alpha=alpha)
    return PairedResult(diffs.size, mean, ci[0], ci[1], test, p, verdict)


@dataclass(frozen=True)
class TwoSampleResult:
    """Two independent samples of accuracies (%), ``a`` minus ``b``."""

    n_a: int
    n_b: int
    median_diff: float
    median_ci: tuple[float, float]
    iqr_a: float
    iqr_b: float
    iqr_diff_ci: tuple[float, float]
    p_value: float  # Mann-Whitney U, two-sided
    verdict: str


def two_sample_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    names: tuple[str, str] = ("A", "B"),
    n_resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> TwoSampleResult:
    """Compare the location (median) and the spread (IQR) of two samples.

    The verdict says which sample has the higher median or the smaller spread only when the
    bootstrap interval of the difference excludes 0 (and, for the median, the Mann-Whitney
    test rejects at ``alpha``).
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    nan2 = (float("nan"), float("nan"))
    empty = xa.size == 0 or xb.size == 0
    med = float("nan") if empty else float(np.median(xa) - np.median(xb))
    iqr_a = float(iqr(xa)) if xa.size else float("nan")
    iqr_b = float(iqr(xb)) if xb.size else float("nan")
    med_ci = nan2 if empty else bootstrap_diff_ci(xa, xb, np.median, n_resamples=n_resamples,
                                                  seed=seed)
    iqr_ci = nan2 if empty else bootstrap_diff_ci(xa, xb, iqr, n_resamples=n_resamples,
                                                  seed=seed + 1)
    if empty or np.ptp(np.concatenate([xa, xb])) == 0:
        p = 1.0  # identical constants (or nothing): no evidence either way
    else:
        p = float(sps.mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
    na, nb = names
    if min(xa.size, xb.size) < MIN_N:
        verdict = (
            f"insufficient evidence: {xa.size} vs {xb.size} completed trials (need at least "
            f"{MIN_N} in each)"
        )
    else:
        verdict = f"{_location(na, nb, med, med_ci, p, alpha)}; " + _spread(
            na, nb, iqr_a, iqr_b, iqr_ci
        )
    return TwoSampleResult(
        xa.size, xb.size, med, med_ci, iqr_a, iqr_b, iqr_ci, p, verdict
    )


def _location(
    na: str, nb: str, med: float, ci: tuple[float, float], p: float, alpha: float
) -> str:
    text = f"{med:+.2f} pp, 95% CI [{ci[0]:+.2f}, {ci[1]:+.2f}], Mann-Whitney p={p:.2g}"
    if ci[0] <= 0 <= ci[1]:
        return f"no evidence that the median accuracy differs ({text})"
    if p >= alpha:
        return f"inconclusive difference in median accuracy ({text}; the test does not reject)"
    higher, lower = (na, nb) if med > 0 else (nb, na)
    return f"{higher} has a higher median accuracy than {lower} ({text})"


def _spread(na: str, nb: str, iqr_a: float, iqr_b: float, ci: tuple[float, float]) -> str:
    text = (
        f"IQR {iqr_a:.2f} vs {iqr_b:.2f} pp, difference 95% CI [{ci[0]:+.2f}, {ci[1]:+.2f}]"
    )
    if ci[0] <= 0 <= ci[1]:
        return f"no evidence that the spread differs ({text})"
    stabler, other = (na, nb) if ci[1] < 0 else (nb, na)
    return f"{stabler} is more stable (less spread) than {other} ({text})"
