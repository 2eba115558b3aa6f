"""The paired statistics against cases whose answers can be computed by hand."""

from __future__ import annotations

import math

import pytest

from smolforge.evaluation.stats import (
    binomial_two_sided,
    bootstrap_mean_ci,
    compare_paired,
    mcnemar_exact,
    sign_test,
)


@pytest.mark.parametrize(("b", "c", "expected"), [
    (0, 0, 1.0),                    # no discordant pairs: no evidence either way
    (0, 5, 2 / 32),                 # 2 * (1/2)^5
    (5, 0, 2 / 32),                 # symmetric
    (1, 9, 2 * (1 + 10) / 1024),    # 2 * (C(10,0) + C(10,1)) / 2^10
    (3, 3, 1.0),                    # balanced: capped at 1
    (2, 8, 2 * (1 + 10 + 45) / 1024),
    (0, 1, 1.0),                    # one flip proves nothing: 2 * 1/2
])
def test_mcnemar_exact_matches_hand_computed_binomial_tails(b, c, expected):
    assert mcnemar_exact(b, c) == pytest.approx(expected, abs=1e-15)


def test_binomial_tail_of_twenty_flips():
    # k=5 of 20: 2 * sum_{i<=5} C(20, i) / 2^20
    tail = sum(math.comb(20, i) for i in range(6))
    assert binomial_two_sided(5, 20) == pytest.approx(2 * tail / 2**20)
    with pytest.raises(ValueError):
        binomial_two_sided(3, 2)


def test_sign_test_ignores_ties():
    assert sign_test([0.5, 0.25, 0.0, 0.0, 1.0]) == pytest.approx(2 / 8)  # 3 positive, 0 negative
    assert sign_test([0.0, 0.0]) == 1.0


def test_bootstrap_of_constant_differences_is_that_constant():
    assert bootstrap_mean_ci([0.25] * 40, resamples=500, seed=1) == (0.25, 0.25)


def test_bootstrap_of_a_two_point_distribution_spans_its_extremes():
    # Means of 2 resampled items from {0, 1}: 0 (p=1/4), 0.5 (p=1/2), 1 (p=1/4): the 2.5% and 97.5%
    # quantiles are 0 and 1.
    assert bootstrap_mean_ci([0.0, 1.0], resamples=4000, seed=3) == (0.0, 1.0)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    diffs = [1, 0, 0, -1, 1, 1, 0, 1, 0, 0] * 5
    first = bootstrap_mean_ci(diffs, resamples=1000, seed=7)
    assert first == bootstrap_mean_ci(diffs, resamples=1000, seed=7)
    assert first != bootstrap_mean_ci(diffs, resamples=1000, seed=8)
    assert first[0] < sum(diffs) / len(diffs) < first[1]


def test_compare_paired_counts_flips_and_uses_mcnemar_for_right_wrong_scores():
    base = [1, 1, 0, 0, 0, 0, 1, 0]
    tuned = [1, 0, 1, 1, 1, 0, 1, 1]
    cmp = compare_paired(base, tuned, resamples=1000, seed=0)
    assert (cmp.n, cmp.candidate_only, cmp.reference_only) == (8, 4, 1)
    assert cmp.reference == 3 / 8 and cmp.candidate == 6 / 8
    assert cmp.delta == pytest.approx(3 / 8)
    assert cmp.test == "mcnemar_exact"
    assert cmp.p_value == pytest.approx(2 * (1 + 5) / 32)  # b=1, c=4: 2 * (C(5,0)+C(5,1)) / 2^5
    assert cmp.ci_low <= cmp.delta <= cmp.ci_high


def test_compare_paired_uses_the_sign_test_for_graded_scores():
    cmp = compare_paired([0.2, 0.5, 0.1], [0.4, 0.5, 0.3], resamples=200, seed=0)
    assert cmp.test == "sign_test" and cmp.p_value == pytest.approx(0.5)
    with pytest.raises(ValueError):
        compare_paired([1, 0], [1], resamples=100, seed=0)


def test_right_or_wrong_scores_get_newcombes_paired_interval_not_a_bound_at_zero():
    """3 gained, 0 lost of 49 (16 right for both): the bootstrap put the lower bound at exactly +0.000; Newcombe's
    score interval for paired proportions (method 10, continuity-corrected phi) gives [-0.017, +0.139]."""
    from smolforge.evaluation.stats import compare_paired, newcombe_paired_ci

    ref = [1.0] * 16 + [0.0] * 33
    cand = [1.0] * 19 + [0.0] * 30
    cmp = compare_paired(ref, cand, resamples=1000, seed=0)
    assert cmp.interval == "newcombe" and (cmp.candidate_only, cmp.reference_only) == (3, 0)
    assert (round(cmp.ci_low, 3), round(cmp.ci_high, 3)) == (-0.017, 0.139)
    low, high = newcombe_paired_ci(16, 0, 0, 33)  # nothing changed: an interval around 0 that is not empty
    assert low < 0 < high and low == pytest.approx(-high)
    scores = compare_paired([0.2, 0.5, 0.9], [0.4, 0.5, 0.7], resamples=200, seed=0)  # not right/wrong
    assert scores.interval == "bootstrap"
