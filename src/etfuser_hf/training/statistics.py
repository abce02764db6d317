"""Significance of one model against another on the same evaluation examples."""

from __future__ import annotations

import math

import numpy as np

from .variants import VariantResult


def paired_bootstrap_pvalue(
    correct_a: np.ndarray, correct_b: np.ndarray, num_resamples: int = 5000, seed: int = 0
) -> float:
    """Two-sided paired bootstrap test of equal accuracy: resamples eval examples, recentres the accuracy difference
    under the null and returns the share of resampled differences at least as extreme as the observed one."""
    correct_a, correct_b = np.asarray(correct_a, np.float64), np.asarray(correct_b, np.float64)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError("correct_a and correct_b must be 1-D arrays over the same eval examples.")
    differences = correct_a - correct_b
    observed = differences.mean()
    if np.all(differences == 0):
        return 1.0
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(differences), (num_resamples, len(differences)))
    resampled = differences[indices].mean(axis=1) - observed
    return float((np.sum(np.abs(resampled) >= abs(observed)) + 1) / (num_resamples + 1))


def mcnemar_pvalue(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact (binomial) two-sided McNemar test on the discordant pairs."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_a, only_b) + 1)) / 2**discordant
    return float(min(1.0, 2 * tail))


def paired_pvalues(reference: VariantResult, other: VariantResult, labels: np.ndarray) -> tuple[float, float]:
    """p-values of `other` against `reference` on the same eval set, rounded to 4 places: (paired bootstrap over
    5000 resamples, two-sided; exact McNemar) on per-image correctness."""
    reference_correct, correct = reference.predictions == labels, other.predictions == labels
    return (round(paired_bootstrap_pvalue(reference_correct, correct), 4),
            round(mcnemar_pvalue(reference_correct, correct), 4))
