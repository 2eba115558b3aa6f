"""Paired statistics for "did the fine-tune beat its base on the same items?".

Both models answer the same items, so the comparison is paired: differences are taken per item.
For right/wrong scores the confidence interval of the difference in accuracy is Newcombe's score
interval for paired proportions (method 10 of Newcombe 1998, with its continuity-corrected phi),
whose coverage holds at small n and at the edges: a percentile bootstrap puts a bound exactly at 0
when no item was lost and collapses to [0, 0] when no item changed. For other per-item scores it is a
seeded percentile bootstrap of the mean per-item difference. The test is exact (binomial on the items
where the two models disagree: McNemar's exact test for right/wrong scores, the sign test otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips (doubling the smaller tail, capped at 1)."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def mcnemar_exact(base_only: int, tuned_only: int) -> float:
    """McNemar's exact test: items only the base got right vs items only the fine-tune got right."""
    return binomial_two_sided(tuned_only, base_only + tuned_only)


def sign_test(differences: Sequence[float]) -> float:
    """Exact sign test on paired differences; ties (zero differences) carry no information and are dropped."""
    pos = sum(1 for d in differences if d > 0)
    neg = sum(1 for d in differences if d < 0)
    return binomial_two_sided(pos, pos + neg)


Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def newcombe_paired_ci(both: int, reference_only: int, candidate_only: int, neither: int,
                       z: float = Z95) -> tuple[float, float]:
    """95% interval of p(candidate right) - p(reference right) on the same items (Newcombe 1998, method 10).

    The Wilson intervals of the two accuracies are combined with the correlation of the paired outcomes (phi,
    continuity-corrected as Newcombe does: a positive a*d - b*c is reduced by n/2, not below 0)."""
    a, b, c, d = both, reference_only, candidate_only, neither
    n = a + b + c + d
    if n == 0:
        raise ValueError("no paired items")
    p1, p2 = (a + b) / n, (a + c) / n  # the reference's and the candidate's accuracy
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c, n, z)
    numerator = a * d - b * c
    if numerator > 0:
        numerator = max(numerator - n / 2, 0.0)
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    phi = numerator / math.sqrt(denominator) if denominator else 0.0
    theta = p2 - p1
    below = math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    above = math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return max(-1.0, theta - below), min(1.0, theta + above)


def bootstrap_mean_ci(differences: Sequence[float], resamples: int, seed: int,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of paired differences (items resampled with replacement)."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no paired items to bootstrap")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    chunk = max(1, 4_000_000 // d.size)  # bounds memory: at most ~4M indices at once
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedComparison:
    n: int
    reference: float  # mean score of the reference model (the base)
    candidate: float  # mean score of the candidate (the fine-tune)
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # "mcnemar_exact" or "sign_test"
    interval: str  # "newcombe" (right/wrong scores) or "bootstrap" (any other per-item score)
    candidate_only: int  # items the candidate gained (binary: wrong -> right)
    reference_only: int  # items the candidate lost (binary: right -> wrong)


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def compare_paired(reference: Sequence[float], candidate: Sequence[float], resamples: int,
                   seed: int) -> PairedComparison:
    """Difference candidate - reference on the same items, with its CI and an exact paired test."""
    if len(reference) != len(candidate):
        raise ValueError(f"paired scores differ in length: {len(reference)} vs {len(candidate)}")
    ref = [float(v) for v in reference]
    cand = [float(v) for v in candidate]
    diffs = [c - r for r, c in zip(ref, cand, strict=True)]
    gained = sum(1 for d in diffs if d > 0)
    lost = sum(1 for d in diffs if d < 0)
    binary = is_binary(ref) and is_binary(cand)
    if binary:
        both = sum(1 for r, c in zip(ref, cand, strict=True) if r == c == 1.0)
        ci_low, ci_high = newcombe_paired_ci(both, lost, gained, len(ref) - both - lost - gained)
    else:
        ci_low, ci_high = bootstrap_mean_ci(diffs, resamples, seed)
    p = mcnemar_exact(lost, gained) if binary else sign_test(diffs)
    ref_mean, cand_mean = float(np.mean(ref)), float(np.mean(cand))
    return PairedComparison(
        n=len(ref), reference=ref_mean, candidate=cand_mean, delta=float(np.mean(diffs)), ci_low=ci_low,
        ci_high=ci_high, p_value=p, test="mcnemar_exact" if binary else "sign_test",
        interval="newcombe" if binary else "bootstrap",
        candidate_only=gained, reference_only=lost,
    )
