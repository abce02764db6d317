"""Significance of one model against another, with scipy: on the same test examples (exact McNemar through
`scipy.stats.binomtest` for correctness, paired bootstrap through `scipy.stats.bootstrap` for any per-example score
such as NME) and across seeds (`scipy.stats.ttest_rel` on the per-seed test metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:  # the type only: this module needs scipy, not the Trainer
    from .trainer import RunResult


def _paired(scores_a: np.ndarray, scores_b: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    scores_a, scores_b = np.asarray(scores_a, dtype), np.asarray(scores_b, dtype)
    if scores_a.shape != scores_b.shape or scores_a.ndim != 1:
        raise ValueError(f"scores_a and scores_b must be 1-D arrays over the same examples, got shapes "
                         f"{scores_a.shape} and {scores_b.shape}.")
    return scores_a, scores_b


def paired_bootstrap_pvalue(scores_a: np.ndarray, scores_b: np.ndarray, num_resamples: int = 5000, seed: int = 0
                            ) -> float:
    """Two-sided paired bootstrap test of equal mean score (accuracy from 0/1 correctness, or mean NME): the
    bootstrap distribution of the mean per-example difference (`scipy.stats.bootstrap`), recentred under the null;
    returns the share of resampled differences at least as extreme as the observed one."""
    scores_a, scores_b = _paired(scores_a, scores_b, np.float64)
    differences = scores_a - scores_b
    observed = differences.mean()
    if np.all(differences == differences[0]):
        return 1.0 if observed == 0 else 1.0 / (num_resamples + 1)
    result = stats.bootstrap((differences,), np.mean, n_resamples=num_resamples, method="percentile",
                             vectorized=True, rng=np.random.default_rng(seed))
    resampled = result.bootstrap_distribution - observed
    return float((np.sum(np.abs(resampled) >= abs(observed)) + 1) / (num_resamples + 1))


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


def paired_pvalues(reference: RunResult, other: RunResult, labels: np.ndarray) -> tuple[float, float]:
    """p-values of `other` against `reference` on the same eval set, rounded to 4 places: (paired bootstrap over
    5000 resamples, two-sided; exact McNemar) on per-image correctness."""
    reference_correct, correct = reference.predictions == labels, other.predictions == labels
    return (round(paired_bootstrap_pvalue(reference_correct, correct), 4),
            round(mcnemar_pvalue(reference_correct, correct), 4))
