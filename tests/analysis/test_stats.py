"""The pure statistics on constructed data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from hpo.analysis.stats import (
    bootstrap_ci,
    bootstrap_diff_ci,
    iqr,
    paired_comparison,
    paired_test,
    paired_verdict,
    two_sample_comparison,
)

RESAMPLES = 2000  # enough for the assertions, fast on a shared CPU


def _noisy(n: int, shift: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    default = 97 + rng.normal(0, 0.5, n)
    return default + shift + rng.normal(0, 0.2, n), default


def test_identical_arrays_show_no_difference():
    acc = np.array([97.1, 97.5, 96.9, 98.0, 97.3, 97.7, 97.2, 96.8])
    r = paired_comparison(acc, acc.copy(), n_resamples=RESAMPLES)
    assert r.n == 8
    assert r.mean_diff == 0
    assert r.ci_low <= 0 <= r.ci_high
    assert r.p_value == 1.0
    assert r.verdict.startswith("no evidence of a difference")
    assert "n=8 pairs" in r.verdict


def test_constant_shift_with_noise_is_an_improvement():
    tuned, default = _noisy(12, +1.0)
    r = paired_comparison(tuned, default, n_resamples=RESAMPLES)
    assert r.ci_low > 0
    assert r.mean_diff == pytest.approx(1.0, abs=0.2)
    assert r.test == "Wilcoxon"
    assert r.p_value < 0.01
    assert r.verdict.startswith("tuning ReLU'(0) improved accuracy by +")
    assert "Wilcoxon p=" in r.verdict and "n=12" in r.verdict


def test_negative_shift_is_reported_as_lower():
    tuned, default = _noisy(12, -1.0)
    r = paired_comparison(tuned, default, what="ReLU6'(0)", n_resamples=RESAMPLES)
    assert r.ci_high < 0
    assert r.verdict.startswith("tuning ReLU6'(0) lowered accuracy by -")


def test_three_pairs_are_insufficient_even_with_a_large_shift():
    tuned, default = _noisy(3, +5.0)
    r = paired_comparison(tuned, default, n_resamples=RESAMPLES)
    assert r.n == 3
    assert r.verdict.startswith("insufficient evidence: only 3 pairs")
    assert "improved" not in r.verdict


def test_no_pairs():
    r = paired_comparison([], [], n_resamples=RESAMPLES)
    assert r.n == 0 and np.isnan(r.mean_diff)
    assert r.verdict.startswith("no pairs")


def test_bootstrap_is_deterministic_given_the_seed():
    tuned, default = _noisy(10, 0.3)
    a = paired_comparison(tuned, default, seed=7, n_resamples=RESAMPLES)
    b = paired_comparison(tuned, default, seed=7, n_resamples=RESAMPLES)
    c = paired_comparison(tuned, default, seed=8, n_resamples=RESAMPLES)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_bootstrap_ci_of_the_mean_has_the_textbook_width():
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 2.0, 400)
    lo, hi = bootstrap_ci(x, n_resamples=RESAMPLES, seed=0)
    assert lo < x.mean() < hi
    # normal theory: 2 * 1.96 * sigma / sqrt(n) = 0.392
    assert hi - lo == pytest.approx(0.392, rel=0.15)


def test_bootstrap_ci_covers_a_known_mean_about_as_often_as_it_claims():
    rng = np.random.default_rng(5)
    covered = 0
    for seed in range(200):
        lo, hi = bootstrap_ci(rng.normal(1.0, 1.0, 40), n_resamples=500, seed=seed)
        covered += lo < 1.0 < hi
    # a percentile bootstrap at n=40 undercovers slightly; 200 draws: sd of the rate ~1.6 %
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_ci_edge_cases():
    assert all(np.isnan(bootstrap_ci([])))
    assert bootstrap_ci([2.5]) == (2.5, 2.5)  # every resample of one value is that value
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    x = np.arange(20.0)
    assert bootstrap_ci(x, seed=3, n_resamples=500) == bootstrap_ci(x, seed=3, n_resamples=500)
    assert bootstrap_ci(x, seed=3, n_resamples=500) != bootstrap_ci(x, seed=4, n_resamples=500)
    lo90, hi90 = bootstrap_ci(x, confidence=0.90, n_resamples=RESAMPLES)
    lo99, hi99 = bootstrap_ci(x, confidence=0.99, n_resamples=RESAMPLES)
    assert lo99 < lo90 < x.mean() < hi90 < hi99


def test_bootstrap_diff_ci_of_medians_covers_the_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(3.0, 1.0, 200), rng.normal(0.0, 1.0, 200)
    lo, hi = bootstrap_diff_ci(a, b, np.median, n_resamples=RESAMPLES)
    assert lo < 3.0 < hi and lo > 2.0
    assert np.isnan(bootstrap_diff_ci([], b)[0])
    assert bootstrap_diff_ci([3.0], [1.0]) == (2.0, 2.0)
    lo1, hi1 = bootstrap_diff_ci([5.0], b, np.median, n_resamples=RESAMPLES)
    assert lo1 < 5.0 < hi1  # only b varies: the interval is 5 minus b's median interval


def test_sign_test_with_few_pairs_is_exact():
    # 5 of 5 positive: two-sided exact binomial p = 2 / 2**5
    assert paired_test([0.1, 0.2, 0.3, 0.4, 0.5]) == ("sign test", pytest.approx(0.0625))


def test_sign_test_when_differences_tie_and_zeros_are_dropped():
    name, p = paired_test([0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.0, 0.0])
    assert name == "sign test"
    assert p == pytest.approx(2 / 2**7)  # the two zeros say nothing about the direction


def test_wilcoxon_for_enough_distinct_differences():
    name, p = paired_test([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, -0.05])
    assert name == "Wilcoxon"
    assert 0 < p < 0.05


def test_verdict_never_claims_significance_the_test_does_not_support():
    text = paired_verdict(0.8, (0.1, 1.5), "sign test", 0.12, 6)
    assert text.startswith("inconclusive")
    assert "improved" not in text


def test_two_samples_from_one_distribution_show_no_difference():
    rng = np.random.default_rng(3)
    a, b = rng.normal(97, 1, 40), rng.normal(97, 1, 40)
    r = two_sample_comparison(a, b, names=("tuned", "fixed"), n_resamples=RESAMPLES)
    assert r.median_ci[0] <= 0 <= r.median_ci[1]
    assert "no evidence that the median accuracy differs" in r.verdict
    assert "no evidence that the spread differs" in r.verdict


def test_two_samples_higher_median_and_smaller_spread():
    rng = np.random.default_rng(4)
    a, b = rng.normal(98, 0.2, 40), rng.normal(96, 2.0, 40)
    r = two_sample_comparison(a, b, names=("tuned", "fixed"), n_resamples=RESAMPLES)
    assert r.median_diff > 0 and r.median_ci[0] > 0 and r.p_value < 0.001
    assert r.iqr_a < r.iqr_b and r.iqr_diff_ci[1] < 0
    assert "tuned has a higher median accuracy than fixed" in r.verdict
    assert "tuned is more stable (less spread) than fixed" in r.verdict


def test_two_samples_with_few_trials_are_insufficient():
    r = two_sample_comparison([97, 98, 99], [90, 91, 92, 93, 94], n_resamples=RESAMPLES)
    assert r.verdict.startswith("insufficient evidence: 3 vs 5")


def test_iqr():
    assert iqr([1, 2, 3, 4, 5]) == pytest.approx(2.0)
