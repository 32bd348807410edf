"""The Costly Dilemma as one scorecard: quality, generalization, evaluation cost and serving cost per stage.

"The Costly Dilemma" (Aryan et al., arXiv 2308.08061) argues that generalization, evaluation cost
and deployment cost are *relatively orthogonal*, so a model choice must weigh all three. This
module puts them on one table over lifecycle stages and tests that claim:

* **skill** (:func:`skill`): 1 - RMSE / RMSE of the constant prior (always answering the mean of
  the training labels), so that tasks on different scales are comparable and 0 means "no better
  than the trivial baseline";
* **evaluation cost** (:func:`evaluation_budget`): the labelled items a 95% interval of the RMSE
  of a given half-width needs (delta method on the per-item squared errors), priced as human
  labels plus the machine time to score them;
* **serving cost**: US$ per 1,000 requests from measured seconds per request (this machine) or a
  roofline's prediction (other hardware), at a stated machine price and utilisation;
* :func:`rank_correlations`: Spearman correlations between the axes across stages, with
  percentile intervals from bootstrap replicates of the axes (resampled evaluation items);
* :func:`nondominated` and :func:`weighted_ranking`: the Pareto set over the axes and a weighted
  choice among stages.

>>> round(float(skill(rmse=0.8, baseline_rmse=1.0)), 3)
0.2
>>> evaluation_budget(np.array([0.0, 1.0, 4.0, 1.0]), half_width=0.5).items   # squared errors of 4 items
8
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import norm

from workbench.cost.evaluation import metric_usd_per_1000

# Axis -> direction: +1 when larger is better, -1 when smaller is better.
AXES = {"generalization": 1, "evaluation_usd": -1, "serving_usd_per_1000": -1}


def skill(rmse, baseline_rmse):
    """1 - rmse / baseline_rmse (1: perfect, 0: as good as the constant prior, < 0: worse); broadcasts."""
    return 1.0 - np.asarray(rmse, dtype=float) / np.asarray(baseline_rmse, dtype=float)


def rmse(predictions, gold) -> float:
    return float(np.sqrt(np.mean((np.asarray(predictions, float) - np.asarray(gold, float)) ** 2)))


@dataclass(frozen=True)
class EvaluationBudget:
    """What a confidence interval of the RMSE costs.

    Attributes:
        items: labelled items needed for a ``confidence`` interval of +- ``half_width``.
        rmse: the RMSE the variance was estimated at.
        half_width, confidence: the target.
    """

    items: int
    rmse: float
    half_width: float
    confidence: float

    def usd(self, label_usd_per_item: float, seconds_per_item: float, usd_per_hour: float) -> tuple[float, float]:
        """(labels, compute) in US$: human labels for every item and machine time to score them."""
        return self.items * label_usd_per_item, metric_usd_per_1000(seconds_per_item, usd_per_hour) * self.items / 1000


def evaluation_budget(squared_errors: np.ndarray, half_width: float, confidence: float = 0.95) -> EvaluationBudget:
    """Items needed for a confidence interval of the RMSE of +- ``half_width`` (delta method).

    RMSE = sqrt(mean(e^2)), so its standard error is sd(e^2) / (2 RMSE sqrt(n)); solving
    z * se = half_width for n gives the count (rounded up).

    Args:
        squared_errors: (n,) per-item squared errors on a pilot set.
        half_width: wanted half-width, in the metric's units.
        confidence: nominal coverage.
    """
    e2 = np.asarray(squared_errors, dtype=float)
    value = math.sqrt(e2.mean())
    if value == 0 or len(e2) < 2:
        return EvaluationBudget(1, value, half_width, confidence)
    z = norm.ppf(0.5 + confidence / 2)
    items = math.ceil(round((z * e2.std(ddof=1) / (2 * value * half_width)) ** 2, 9))
    return EvaluationBudget(max(items, 1), value, half_width, confidence)


def nondominated(table: pd.DataFrame, axes: Mapping[str, int] = AXES) -> np.ndarray:
    """(n,) bool: rows no other row beats on every axis (at least as good on all, better on one)."""
    values = np.column_stack([table[axis].to_numpy(dtype=float) * sign for axis, sign in axes.items()])
    at_least = (values[None, :, :] >= values[:, None, :]).all(axis=2)  # [i, j]: j at least as good as i everywhere
    better = (values[None, :, :] > values[:, None, :]).any(axis=2)
    return ~(at_least & better).any(axis=1)


def weighted_ranking(table: pd.DataFrame, weights: Mapping[str, float], axes: Mapping[str, int] = AXES) -> pd.Series:
    """A weighted score per row: each axis min-max scaled to 0..1 (1 = best), then weighted and summed.

    Args:
        table: one row per stage with the axis columns.
        weights: axis -> non-negative weight (normalised to sum 1).

    Returns:
        The scores, indexed like ``table``, in 0..1.
    """
    total = sum(weights.values())
    if total <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError(f"weights must be non-negative and not all zero, got {dict(weights)}")
    score = pd.Series(0.0, index=table.index)
    for axis, sign in axes.items():
        values = table[axis].astype(float) * sign
        spread = values.max() - values.min()
        scaled = (values - values.min()) / spread if spread > 0 else values * 0 + 1.0
        score += weights.get(axis, 0.0) / total * scaled
    return score


def rank_correlations(axes: pd.DataFrame, replicates: Sequence[pd.DataFrame], columns: Sequence[str] = tuple(AXES),
                      confidence: float = 0.95) -> pd.DataFrame:
    """Spearman correlation of every pair of axes across stages, with bootstrap percentile intervals.

    Args:
        axes: one row per stage with the axis columns (the estimates).
        replicates: bootstrap replicates of ``axes`` (same rows and columns), e.g. from
            resampled evaluation items.
        columns: the axes to correlate.
        confidence: interval coverage.

    Returns:
        One row per pair: ``rho`` and its interval ``low``, ``high``, the number of stages and of
        replicates, and ``verdict``: "orthogonal-compatible" when the interval covers 0,
        "correlated" when it excludes 0.
    """
    tail = (1 - confidence) / 2
    rows = []
    for i, a in enumerate(columns):
        for b in columns[i + 1:]:
            rho = stats.spearmanr(axes[a], axes[b]).statistic
            boot = np.array([stats.spearmanr(r[a], r[b]).statistic for r in replicates], dtype=float)
            boot = boot[np.isfinite(boot)]
            low, high = (np.quantile(boot, [tail, 1 - tail]) if len(boot) else (np.nan, np.nan))
            verdict = "correlated" if low > 0 or high < 0 else "orthogonal-compatible"
            rows.append({"axis_a": a, "axis_b": b, "rho": float(rho), "low": float(low), "high": float(high),
                         "stages": len(axes), "replicates": len(boot), "verdict": verdict})
    return pd.DataFrame(rows)
