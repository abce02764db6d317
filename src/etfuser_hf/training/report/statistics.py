"""Significance of one model against another, with scipy: on the same test examples (exact McNemar through
`scipy.stats.binomtest` for correctness, a paired permutation test through `scipy.stats.permutation_test` for any
per-example score such as NME) and across seeds (`scipy.stats.ttest_rel` on the per-seed test metrics); and the Holm
correction of a family of p-values (the rows of one task table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:  # the type only: this module needs scipy, not the Trainer
    from ..run.trainer import RunResult


def _paired(scores_a: np.ndarray, scores_b: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    scores_a, scores_b = np.asarray(scores_a, dtype), np.asarray(scores_b, dtype)
    if scores_a.shape != scores_b.shape or scores_a.ndim != 1:
        raise ValueError(f"scores_a and scores_b must be 1-D arrays over the same examples, got shapes "
                         f"{scores_a.shape} and {scores_b.shape}.")
    return scores_a, scores_b


def paired_permutation_pvalue(scores_a: np.ndarray, scores_b: np.ndarray, num_resamples: int = 5000, seed: int = 0
                              ) -> float:
    """Two-sided paired permutation test of equal mean score (accuracy from 0/1 correctness, or mean NME):
    `scipy.stats.permutation_test(..., permutation_type="samples")` on the mean per-example difference, which swaps
    the two scores of random examples (exactly, over all swaps, when there are at most `num_resamples`)."""
    scores_a, scores_b = _paired(scores_a, scores_b, np.float64)
    if np.all(scores_a == scores_b):
        return 1.0
    result = stats.permutation_test((scores_a, scores_b), lambda a, b, axis: np.mean(a - b, axis=axis),
                                    permutation_type="samples", vectorized=True, n_resamples=num_resamples,
                                    alternative="two-sided", rng=np.random.default_rng(seed))
    return float(result.pvalue)


def mcnemar_pvalue(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact two-sided McNemar test: a binomial test (`scipy.stats.binomtest`, p = 1/2) on the discordant pairs."""
    correct_a, correct_b = _paired(correct_a, correct_b, bool)
    only_a, only_b = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def seed_ttest_pvalue(metric_a: Sequence[float], metric_b: Sequence[float]) -> float | None:
    """Paired t-test across seeds (`scipy.stats.ttest_rel`) of two rows' per-seed test metrics; None with fewer
    than two seeds, 1.0 when the two are identical on every seed."""
    metric_a, metric_b = _paired(metric_a, metric_b, np.float64)
    if len(metric_a) < 2:
        return None
    differences = metric_a - metric_b
    if np.all(differences == 0):
        return 1.0
    if np.all(differences == differences[0]):  # zero variance, non-zero mean: as significant as it gets
        return 0.0
    return float(stats.ttest_rel(metric_a, metric_b).pvalue)


def holm_adjusted(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down correction of a family of p-values (None: no test, left out of the family): the i-th
    smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j)); it controls the family-wise error rate."""
    present = sorted((p, index) for index, p in enumerate(pvalues) if p is not None)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[index] = running
    return adjusted


def paired_pvalues(reference: RunResult, other: RunResult, labels: np.ndarray) -> tuple[float, float]:
    """p-values of `other` against `reference` on the same eval set, rounded to 4 places: (paired permutation test
    over 5000 resamples, two-sided; exact McNemar) on per-image correctness."""
    reference_correct, correct = reference.predictions == labels, other.predictions == labels
    return (round(paired_permutation_pvalue(reference_correct, correct), 4),
            round(mcnemar_pvalue(reference_correct, correct), 4))
