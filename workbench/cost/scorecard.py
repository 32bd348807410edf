"""The Costly Dilemma as one scorecard: quality, generalization, evaluation cost and serving cost per stage.

"The Costly Dilemma" (Aryan et al., arXiv 2308.08061) argues that generalization, evaluation cost
and deployment cost are *relatively orthogonal*, so a model choice must weigh all three. This
module puts them on one table over lifecycle stages and tests that claim:

* **skill** (:func:`skill`): 1 - RMSE / RMSE of the constant prior (always answering the mean of
  the training labels), so that tasks on different scales are comparable and 0 means "no better
  than the trivial baseline";
* **evaluation cost**: the labelled items a 95% interval of the RMSE of a given half-width needs, found by
  subsampling the evaluated items (:mod:`workbench.cost.item_budget`), priced as human labels plus the
  measured machine time to score them;
* **serving cost**: US$ per 1,000 requests from measured seconds per request (this machine) or a
  roofline's prediction (other hardware), at a stated machine price and utilisation;
* :func:`nondominated` and :func:`weighted_ranking`: the Pareto set over the axes and a weighted
  choice among stages. Whether the axes move together is :mod:`workbench.cost.orthogonality`'s question.

>>> round(float(skill(rmse=0.8, baseline_rmse=1.0)), 3)
0.2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench.cost.evaluation_cost import metric_usd_per_1000
from workbench.cost.item_budget import budget_table
from workbench.metric_aware.metrics import rmse

# Axis -> direction: +1 when larger is better, -1 when smaller is better.
AXES = {"generalization": 1, "evaluation_usd": -1, "serving_usd_per_1000": -1}


def skill(rmse, baseline_rmse):
    """1 - rmse / baseline_rmse (1: perfect, 0: as good as the constant prior, < 0: worse); broadcasts."""
    return 1.0 - np.asarray(rmse, dtype=float) / np.asarray(baseline_rmse, dtype=float)


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


@dataclass(frozen=True)
class StageScores:
    """One stage's answers on the scorecard's item sets, and what one request costs it.

    Attributes:
        stage: the stage name.
        gold: set name -> (n,) gold values (the same items, in the same order, for every stage).
        predictions: set name -> (n,) answers (e.g. the exact distribution's mean).
        seconds_per_request: measured machine seconds per request on this machine.
        modes: set name -> (n,) grid answers of the exact distribution's mode (accuracy).
        outside: set name -> (n,) probability mass off the answer grid (a formatting failure, not a skill).
        request_seconds: set name -> measured seconds of single requests (prompts x repeats), for resampling.
        tokens_per_item: set name -> mean prompt tokens plus answer tokens of one request.
    """

    stage: str
    gold: Mapping[str, np.ndarray]
    predictions: Mapping[str, np.ndarray]
    seconds_per_request: float
    modes: Mapping[str, np.ndarray] = field(default_factory=dict)
    outside: Mapping[str, np.ndarray] = field(default_factory=dict)
    request_seconds: Mapping[str, np.ndarray] = field(default_factory=dict)
    tokens_per_item: Mapping[str, float] = field(default_factory=dict)


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
    seconds: Mapping[str, float] | None = None,
    repeats: int = 200,
    seed: int = 0,
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
        seconds: stage -> seconds per request (a resample of the timings; default each stage's own).
        repeats, seed: subsets per size of the item count (:func:`workbench.cost.item_budget.budget_table`).

    Returns:
        Columns ``rmse:<set>`` and ``skill:<set>`` per set, ``quality`` (mean skill on ``own``),
        ``generalization`` (mean skill on ``unseen``), ``drop`` (quality - generalization),
        ``evaluation_items`` (sum over ``own``, subsampled), ``evaluation_tokens``, ``evaluation_label_usd``,
        ``evaluation_compute_usd``, ``evaluation_usd``, ``serving_usd_per_1000`` (measured), indexed by stage.
    """
    seconds = seconds or {s.stage: s.seconds_per_request for s in stages}
    budget = (
        budget_table(stages, own, half_width, label_usd_per_item, usd_per_hour, repeats, seed, rows)
        .groupby("stage", sort=False)[["items", "tokens", "label_usd", "compute_usd", "usd"]]
        .sum()
    )
    table = {}
    for scores in stages:
        row = {}
        for name in list(own) + list(unseen):
            take = rows[name] if rows is not None else slice(None)
            gold, answer = np.asarray(scores.gold[name], float)[take], np.asarray(scores.predictions[name], float)[take]
            row[f"rmse:{name}"] = float(rmse(answer, gold))
            row[f"skill:{name}"] = float(skill(row[f"rmse:{name}"], rmse(np.full(len(gold), prior[name]), gold)))
        row["quality"] = float(np.mean([row[f"skill:{n}"] for n in own]))
        row["generalization"] = float(np.mean([row[f"skill:{n}"] for n in unseen]))
        row["drop"] = row["quality"] - row["generalization"]
        spent = budget.loc[scores.stage]
        row.update(
            {
                "evaluation_items": spent["items"],
                "evaluation_tokens": spent["tokens"],
                "evaluation_label_usd": spent["label_usd"],
                "evaluation_compute_usd": spent["compute_usd"],
                "evaluation_usd": spent["usd"],
                "serving_usd_per_1000": metric_usd_per_1000(seconds[scores.stage], usd_per_hour, utilisation),
            }
        )
        table[scores.stage] = row
    return pd.DataFrame.from_dict(table, orient="index").rename_axis("stage")
