"""Do two samplers draw from the same distribution? A two-sample chi-square test on their answers.

Used to check the exact grid sampler (:mod:`workbench.inference.grid_sampler`) against the engine's
real decoding before trusting it: both draw N answers for the same prompt; the answers are counted
in a 2 x C contingency table, where answers rarer than ``min_expected`` (expected count in either
row) are pooled into one "other" column so the chi-square approximation holds. Independent prompts
add up: the sum of their statistics is chi-square with the sum of their degrees of freedom.

The power of such a test is stated as the smallest effect it detects: Cohen's w (the root of the
chi-square statistic per observation) that a test with ``N`` observations and ``df`` degrees of
freedom rejects with probability ``power`` at level ``alpha``.

>>> a = ["1"] * 50 + ["2"] * 50
>>> check = two_sample_chi_square(a, ["1"] * 48 + ["2"] * 52)
>>> (check.df, round(check.p_value, 2))
(1, 0.78)
>>> two_sample_chi_square(a, ["1"] * 90 + ["2"] * 10).p_value < 1e-6
True
>>> round(detectable_w(2000, 4), 3)
0.077
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.stats import chi2, ncx2

OTHER = "<other>"


@dataclass
class ChiSquare:
    """A chi-square test: statistic, degrees of freedom, p-value, and the table it was computed on.

    Attributes:
        statistic: Pearson's chi-square.
        df: degrees of freedom.
        p_value: P(chi2(df) >= statistic).
        n: observations in the table.
        columns: the table's column labels (pooled rare answers under ``OTHER``).
        counts: (2, C) counts, first sampler then second.
    """

    statistic: float
    df: int
    p_value: float
    n: int
    columns: list[str]
    counts: np.ndarray


def two_sample_chi_square(first: Sequence[str], second: Sequence[str], min_expected: float = 5.0) -> ChiSquare:
    """Chi-square test of homogeneity between two samplers' answers (labels) for one prompt.

    Args:
        first, second: the answers each sampler drew (any hashable labels, e.g. texts).
        min_expected: answers whose expected count falls below this in either row are pooled.

    Returns:
        A :class:`ChiSquare`; with a single column left (every answer the same) the statistic is 0, df 0, p 1.
    """
    counts = [Counter(first), Counter(second)]
    totals = np.array([len(first), len(second)], dtype=float)
    if not totals.all():
        raise ValueError("both samplers need at least one answer")
    share = totals / totals.sum()
    kept, pooled = [], np.zeros(2)
    for label in sorted(set(counts[0]) | set(counts[1])):
        row = np.array([counts[0][label], counts[1][label]], dtype=float)
        if (row.sum() * share).min() >= min_expected:
            kept.append((label, row))
        else:
            pooled += row
    columns = [label for label, _ in kept] + ([OTHER] if pooled.sum() else [])
    table = np.array([row for _, row in kept] + ([pooled] if pooled.sum() else [])).T.reshape(2, len(columns))
    if len(columns) < 2:
        return ChiSquare(0.0, 0, 1.0, int(totals.sum()), columns, table)
    expected = np.outer(totals, table.sum(axis=0)) / totals.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    df = len(columns) - 1
    return ChiSquare(statistic, df, float(chi2.sf(statistic, df)), int(totals.sum()), columns, table)


def combined(tests: Sequence[ChiSquare]) -> tuple[float, int, float]:
    """(statistic, df, p-value) of independent tests together: their statistics and dfs add up."""
    statistic, df = sum(t.statistic for t in tests), sum(t.df for t in tests)
    return statistic, df, float(chi2.sf(statistic, df)) if df else 1.0


def detectable_w(n: int, df: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Cohen's w a chi-square test on ``n`` observations with ``df`` degrees of freedom detects with ``power``."""
    critical = chi2.isf(alpha, df)
    # The statistic is noncentral chi-square with noncentrality n * w**2 under an effect of size w.
    noncentrality = brentq(lambda lam: ncx2.sf(critical, df, lam) - power, 1e-9, 1e4)
    return float(np.sqrt(noncentrality / n))
