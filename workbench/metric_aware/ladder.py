"""The regression-aware fine-tuning ladder (Lukasik et al., RAFT, ICLR 2025) on scoring tasks, as one long table.

The rungs, bottom to top: the base model's few-shot greedy answer; the same distribution read with the exact
grid's Bayes rule of each metric (RAIL: mean for RMSE, median for MAE, mode for exact match; Spearman ranks by
the mean, the rule RAFT reports it with); a cross-entropy fine-tuned model, greedy and RAIL; a soft-label
ordinal fine-tuned model with RAIL; and RAFT's squared error of the grid mean with a light cross-entropy anchor
(the ``mix`` objective, weight 0.9 on the squared error), with RAIL: RAFT alone, started from this base model,
fits the constant on SST-5 (docs/findings.md), so the row's name says what it trained on. Every fine-tuned rung
is trained on the same examples for the same steps
(:func:`workbench.lifecycle.recipe.arm_results`). Beside them: the constant prior (the train split read with the
same Bayes rules), TF-IDF and MiniLM ridge regressions, and published anchors, marked as such.

All rows of a task are scored on the same test items, so :func:`adjacent_tests` can pair each rung with the one
below it (paired bootstrap). :func:`ladder_table` is ``results/ladder.csv``: ``task, arm, seed, metric, value,
ci_low, ci_high``; published rows have no seed and no interval.

>>> [arm.name for arm in ARMS][:3]
['few-shot greedy', 'few-shot rail', 'ce greedy']
>>> RAIL_RULES
{'rmse': 'mean', 'mae': 'median', 'exact_match': 'mode', 'spearman': 'mean'}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from workbench.inference.protocol import Engine
from workbench.metric_aware.baselines import Baselines
from workbench.metric_aware.bootstrap import bootstrap_ci, paired_bootstrap
from workbench.metric_aware.experiments import RunConfig, TaskRun, run_task, strategy_predictions
from workbench.metric_aware.metrics import get_metric
from workbench.profiles import load_profile
from workbench.tasks import get_task
from workbench.tasks.grid import snap_to_grid

METRICS = ("rmse", "mae", "exact_match", "spearman")
# metric -> the exact-grid rule RAIL answers it with: the card's Bayes rule; Spearman has none, the mean ranks.
RAIL_RULES = {metric: get_metric(metric).bayes_rule or "mean" for metric in METRICS}
COLUMNS = ["task", "arm", "seed", "metric", "value", "ci_low", "ci_high"]


@dataclass(frozen=True)
class Arm:
    """One rung: which model (``stage``: "base" or a fine-tuning objective) and how its answer is read.

    Attributes:
        name: the row's name in ``results/ladder.csv``.
        stage: "base" (few-shot prompts) or the objective of the fine-tuned model ("ce", "soft", "mix").
        rule: "greedy" (the decoded answer) or "rail" (the exact grid's Bayes rule of each metric).
    """

    name: str
    stage: str
    rule: str


ARMS = (
    Arm("few-shot greedy", "base", "greedy"),
    Arm("few-shot rail", "base", "rail"),
    Arm("ce greedy", "ce", "greedy"),
    Arm("ce rail", "ce", "rail"),
    Arm("soft rail", "soft", "rail"),
    Arm("raft+ce rail", "mix", "rail"),
)
FINE_TUNED = tuple(arm.name for arm in ARMS if arm.stage != "base")  # the arms whose model a seed trains
BASELINES = ("prior", "tfidf ridge", "minilm ridge")
# Published anchors of a fine-tuned BERT-base, as issue 18 quotes them (STS-B Spearman; SST-5 accuracy, Munikar et al.
# 2019): printed beside the measured rows, never measured here.
PUBLISHED = (
    ("stsb", "bert-base (published)", "spearman", 0.88),
    ("sst5", "bert-base (published)", "exact_match", 0.53),
)


def plans(profile: str) -> dict[str, RunConfig]:
    """``{task: RunConfig}`` of the profile's ``ladder`` section: the test items (a subset seeded by 0, the same for
    every arm and every fine-tuning seed) and the base model's demonstrations; the fine-tuned models answer
    zero-shot, the format they were trained in. Greedy answers and exact grid scores only (no samples).

    >>> plans("smoke")["sick"].shots, plans("smoke")["sick"].k
    (5, 0)
    """
    return {task: RunConfig(k=0, seed=0, **sizes) for task, sizes in load_profile(profile)["ladder"].items()}


def decode(engines: Mapping[str, Engine], task_plans: Mapping[str, RunConfig]) -> dict[str, dict[str, TaskRun]]:
    """``{task: {stage: run}}``: every engine (``{stage: engine}``, "base" few-shot, the others zero-shot) on
    every task's items. Decodes are cached by the engines, so the stages notebook 02 decodes cost nothing here."""
    runs = {}
    for name, config in task_plans.items():
        task = get_task(name)
        runs[name] = {
            stage: run_task(engine, task, config if stage == "base" else replace(config, shots=0))
            for stage, engine in engines.items()
        }
    return runs


def arm_predictions(arm: Arm, run: TaskRun) -> dict[str, np.ndarray]:
    """``{metric: (B,) predictions}`` of one rung on a run (greedy answers that do not parse: the grid midpoint)."""
    strategies = strategy_predictions(run)
    if arm.rule == "greedy":
        return {metric: strategies["greedy"].predictions for metric in METRICS}
    return {metric: strategies[f"exact {RAIL_RULES[metric]}"].predictions for metric in METRICS}


def baseline_arm_predictions(baselines: Baselines) -> dict[str, dict[str, np.ndarray]]:
    """``{arm: {metric: predictions}}`` of the baselines: the constant prior read with each metric's rule (train
    mean for RMSE and Spearman, median for MAE, mode for exact match), and the ridges.

    Exact match scores every prediction snapped to the grid, as the comparison tables do.
    """
    prior = {"rmse": "prior mean", "mae": "prior median", "exact_match": "prior mode", "spearman": "prior mean"}
    named = {"prior": prior} | {arm: dict.fromkeys(METRICS, arm) for arm in BASELINES if arm != "prior"}
    source = {m: baselines.on_grid if m == "exact_match" else baselines.predictions for m in METRICS}
    return {
        arm: {m: source[m][name] for m, name in names.items()}
        for arm, names in named.items()
        if all(name in baselines.predictions for name in names.values())
    }


def _gold(metric: str, run: TaskRun) -> np.ndarray:
    return snap_to_grid(run.gold, run.grid) if metric == "exact_match" else run.gold


def _rows(task: str, arm: str, seed, predictions: Mapping[str, np.ndarray], run: TaskRun, n_resamples: int) -> list:
    rows = []
    for metric in METRICS:
        if metric == "spearman" and np.ptp(predictions[metric]) == 0:  # a constant has no ranking
            rows.append([task, arm, seed, metric, np.nan, np.nan, np.nan])
            continue
        result = bootstrap_ci(metric, predictions[metric], _gold(metric, run), n_resamples=n_resamples, seed=0)
        rows.append([task, arm, seed, metric, result.estimate, result.low, result.high])
    return rows


def ladder_predictions(
    runs: Mapping[str, TaskRun], baselines: Baselines | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """``{arm: {metric: predictions}}`` of every rung whose stage is in ``runs`` (``{stage: run}``), then baselines."""
    arms = {arm.name: arm_predictions(arm, runs[arm.stage]) for arm in ARMS if arm.stage in runs}
    return arms | (baseline_arm_predictions(baselines) if baselines is not None else {})


def ladder_table(
    runs: Mapping[str, Mapping[str, TaskRun]],
    seed: int,
    baselines: Mapping[str, Baselines] | None = None,
    n_resamples: int = 1000,
    published: bool = True,
) -> pd.DataFrame:
    """The long table of ``results/ladder.csv`` for ``runs`` (``{task: {stage: run}}``, all on the same items).

    Args:
        runs: per task, the run of each stage ("base", "ce", "soft", "mse"); stages left out drop their rungs.
        seed: the fine-tuning seed of the stages (written in every measured row).
        baselines: per task, the baselines' predictions on the runs' items (see
            :func:`workbench.metric_aware.inference_study.baselines_for`).
        n_resamples: bootstrap resamples of each 95% interval.
        published: add the published anchors (no seed, no interval).

    Returns:
        One row per (task, arm, metric) with the columns :data:`COLUMNS`.
    """
    rows = []
    for task, by_stage in runs.items():
        run = next(iter(by_stage.values()))
        against = (baselines or {}).get(task)
        for arm, predictions in ladder_predictions(by_stage, against).items():
            rows += _rows(task, arm, seed, predictions, run, n_resamples)
    if published:
        rows += [[task, arm, np.nan, metric, value, np.nan, np.nan] for task, arm, metric, value in PUBLISHED]
    return pd.DataFrame(rows, columns=COLUMNS)


def adjacent_tests(runs: Mapping[str, Mapping[str, TaskRun]], n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paired bootstrap of each rung against the rung below it, per task and metric.

    Returns:
        One row per (task, arm, metric): ``against`` (the rung below), ``difference`` (arm minus rung below),
        its 95% interval, the two-sided ``p`` and ``better`` (the difference favours the upper rung and p < 0.05).
    """
    rows = []
    for task, by_stage in runs.items():
        run = next(iter(by_stage.values()))
        present = [arm for arm in ARMS if arm.stage in by_stage]
        for lower, upper in zip(present, present[1:]):
            low, high = arm_predictions(lower, by_stage[lower.stage]), arm_predictions(upper, by_stage[upper.stage])
            for metric in METRICS:
                test = paired_bootstrap(
                    metric, high[metric], low[metric], _gold(metric, run), n_resamples=n_resamples, seed=seed
                )
                difference = test.difference.estimate
                favours = difference > 0 if get_metric(metric).higher_is_better else difference < 0
                rows.append(
                    {
                        "task": task,
                        "arm": upper.name,
                        "against": lower.name,
                        "metric": metric,
                        "difference": difference,
                        "ci_low": test.difference.low,
                        "ci_high": test.difference.high,
                        "p": test.p_value,
                        "better": bool(favours and test.p_value < 0.05),
                    }
                )
    return pd.DataFrame(rows)


def wide(table: pd.DataFrame, seed: int | None = 0) -> pd.DataFrame:
    """One row per (task, arm) in ladder order, one column per metric: ``value [ci_low, ci_high]`` (display).

    >>> long = pd.DataFrame([["sst5", "ce rail", 0, "rmse", 0.9, 0.8, 1.0]], columns=COLUMNS)
    >>> wide(long).loc[("sst5", "ce rail"), "rmse"]
    '0.900 [0.800, 1.000]'
    """
    keep = table[table.seed.isna() | (table.seed == seed)] if seed is not None else table
    text = keep.apply(
        lambda r: f"{r.value:.3f}" + ("" if np.isnan(r.ci_low) else f" [{r.ci_low:.3f}, {r.ci_high:.3f}]"), axis=1
    )
    order = {name: i for i, name in enumerate([a.name for a in ARMS] + list(BASELINES))}
    out = keep.assign(text=text).pivot_table(index=["task", "arm"], columns="metric", values="text", aggfunc="first")
    out = out.reindex(columns=[m for m in METRICS if m in out.columns])
    return out.sort_index(key=lambda idx: idx.map(lambda a: order.get(a, len(order))) if idx.name == "arm" else idx)


def seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread across fine-tuning seeds of each (task, arm, metric): ``mean, sd, min, max, seeds``."""
    measured = table.dropna(subset=["seed"])
    grouped = measured.groupby(["task", "arm", "metric"])["value"]
    return grouped.agg(["mean", "std", "min", "max", "count"]).rename(columns={"std": "sd", "count": "seeds"})
