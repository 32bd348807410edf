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
* :func:`rank_correlations`: Spearman correlations between the axes across stages, with a
  permutation p-value over the stages and percentile intervals from bootstrap replicates of the
  axes (resampled evaluation items);
* :func:`nondominated` and :func:`weighted_ranking`: the Pareto set over the axes and a weighted
  choice among stages.

>>> round(float(skill(rmse=0.8, baseline_rmse=1.0)), 3)
0.2
>>> evaluation_budget(np.array([0.0, 1.0, 4.0, 1.0]), half_width=0.5).items   # squared errors of 4 items
8
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import norm

from workbench.cost.evaluation_cost import metric_usd_per_1000
from workbench.metric_aware.metrics import rmse, squared_error

# Axis -> direction: +1 when larger is better, -1 when smaller is better.
AXES = {"generalization": 1, "evaluation_usd": -1, "serving_usd_per_1000": -1}


def skill(rmse, baseline_rmse):
    """1 - rmse / baseline_rmse (1: perfect, 0: as good as the constant prior, < 0: worse); broadcasts."""
    return 1.0 - np.asarray(rmse, dtype=float) / np.asarray(baseline_rmse, dtype=float)


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


def spearman_permutation_p(a, b, n_permutations: int = 10_000, seed: int = 0) -> float:
    """Two-sided permutation p-value of Spearman's rho between ``a`` and ``b``.

    Exact (every ordering of ``b``) up to 8 values, else ``n_permutations`` random orderings. With
    few values it is large by necessity: with 3 stages no correlation can reach p < 0.05.

    >>> round(spearman_permutation_p([1, 2, 3], [1, 2, 3]), 3)
    0.333
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    observed = abs(stats.spearmanr(a, b).statistic)
    if len(a) <= 8:
        orderings = (np.array(order) for order in itertools.permutations(range(len(b))))
    else:
        rng = np.random.default_rng(seed)
        orderings = (rng.permutation(len(b)) for _ in range(n_permutations))
    null = np.array([abs(stats.spearmanr(a, b[order]).statistic) for order in orderings])
    return float(np.mean(np.nan_to_num(null, nan=0.0) >= observed - 1e-12))


def rank_correlations(
    axes: pd.DataFrame,
    replicates: Sequence[pd.DataFrame],
    columns: Sequence[str] = tuple(AXES),
    confidence: float = 0.95,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Spearman correlation of every pair of axes across stages, with a permutation p-value and bootstrap intervals.

    Args:
        axes: one row per stage with the axis columns (the estimates).
        replicates: bootstrap replicates of ``axes`` (same rows and columns), e.g. from
            resampled evaluation items; they give the interval, which shows how stable the
            ranking of the stages is under item resampling.
        columns: the axes to correlate.
        confidence: interval coverage.
        alpha: level of the permutation test.

    Returns:
        One row per pair: ``rho``, ``p`` (permutation test over the stages' orderings), the
        interval ``low``, ``high``, the number of stages and of replicates, and ``verdict``:
        "correlated" when ``p < alpha``, otherwise "orthogonal-compatible" (no evidence of a
        correlation, which with few stages is weak evidence of its absence).
    """
    tail = (1 - confidence) / 2
    rows = []
    for i, a in enumerate(columns):
        for b in columns[i + 1 :]:
            rho = stats.spearmanr(axes[a], axes[b]).statistic
            boot = np.array([stats.spearmanr(r[a], r[b]).statistic for r in replicates], dtype=float)
            boot = boot[np.isfinite(boot)]
            low, high = np.quantile(boot, [tail, 1 - tail]) if len(boot) else (np.nan, np.nan)
            p = spearman_permutation_p(axes[a], axes[b])
            rows.append(
                {
                    "axis_a": a,
                    "axis_b": b,
                    "rho": float(rho),
                    "p": p,
                    "low": float(low),
                    "high": float(high),
                    "stages": len(axes),
                    "replicates": len(boot),
                    "verdict": "correlated" if p < alpha else "orthogonal-compatible",
                }
            )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class StageScores:
    """One stage's answers on the scorecard's item sets, and what one request costs it.

    Attributes:
        stage: the stage name.
        gold: set name -> (n,) gold values (the same items, in the same order, for every stage).
        predictions: set name -> (n,) answers (e.g. the exact distribution's mean).
        seconds_per_request: measured machine seconds per request on this machine.
    """

    stage: str
    gold: Mapping[str, np.ndarray]
    predictions: Mapping[str, np.ndarray]
    seconds_per_request: float


def scorecard(
    stages: Sequence[StageScores],
    own: Sequence[str],
    unseen: Sequence[str],
    prior: Mapping[str, float],
    half_width: float,
    label_usd_per_item: float,
    usd_per_hour: float,
    utilisation: float = 1.0,
    rows: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per stage: skill on its own tasks and on unseen data, evaluation cost and serving cost.

    Args:
        stages: the stages' answers.
        own: the sets of the tasks the stages are (or would be) trained on.
        unseen: the out-of-domain sets.
        prior: set name -> the constant prior's answer (the training labels' mean, on the set's scale).
        half_width: wanted 95% half-width of each own task's RMSE interval.
        label_usd_per_item: human labelling cost per evaluation item.
        usd_per_hour: price of this machine.
        utilisation: share of the machine real traffic keeps busy.
        rows: set name -> item indices to use (a bootstrap resample; default all items).

    Returns:
        Columns ``rmse:<set>`` and ``skill:<set>`` per set, ``quality`` (mean skill on ``own``),
        ``generalization`` (mean skill on ``unseen``), ``drop`` (quality - generalization),
        ``evaluation_items`` (sum over ``own`` of :func:`evaluation_budget` items),
        ``evaluation_label_usd``, ``evaluation_compute_usd``, ``evaluation_usd``,
        ``serving_usd_per_1000`` (measured), indexed by stage.
    """
    table = {}
    for scores in stages:
        row, items = {}, 0
        for name in list(own) + list(unseen):
            take = rows[name] if rows is not None else slice(None)
            gold, answer = np.asarray(scores.gold[name], float)[take], np.asarray(scores.predictions[name], float)[take]
            row[f"rmse:{name}"] = float(rmse(answer, gold))
            row[f"skill:{name}"] = float(skill(row[f"rmse:{name}"], rmse(np.full(len(gold), prior[name]), gold)))
            if name in own:
                items += evaluation_budget(squared_error(answer, gold), half_width).items
        row["quality"] = float(np.mean([row[f"skill:{n}"] for n in own]))
        row["generalization"] = float(np.mean([row[f"skill:{n}"] for n in unseen]))
        row["drop"] = row["quality"] - row["generalization"]
        labels = items * label_usd_per_item
        compute = items * scores.seconds_per_request * usd_per_hour / 3600
        row.update(
            {
                "evaluation_items": items,
                "evaluation_label_usd": labels,
                "evaluation_compute_usd": compute,
                "evaluation_usd": labels + compute,
                "serving_usd_per_1000": metric_usd_per_1000(scores.seconds_per_request, usd_per_hour, utilisation),
            }
        )
        table[scores.stage] = row
    return pd.DataFrame.from_dict(table, orient="index").rename_axis("stage")


def bootstrap_scorecards(
    stages: Sequence[StageScores],
    own: Sequence[str],
    unseen: Sequence[str],
    n_resamples: int = 200,
    seed: int = 0,
    **options,
) -> list[pd.DataFrame]:
    """Scorecards on bootstrap resamples of the items, the same resample for every stage (paired).

    Each set is resampled on its own; serving seconds are measured once and not resampled. The
    ``options`` are those of :func:`scorecard` (prior, half_width, prices).
    """
    rng = np.random.default_rng(seed)
    sizes = {name: len(stages[0].gold[name]) for name in list(own) + list(unseen)}
    return [
        scorecard(stages, own, unseen, rows={n: rng.integers(0, size, size) for n, size in sizes.items()}, **options)
        for _ in range(n_resamples)
    ]
