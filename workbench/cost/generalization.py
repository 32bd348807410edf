"""Generalization: the same model and decision rule on a task it was not tuned on, and the drop.

A model fine-tuned (or few-shot prompted) for SST-5 is applied, with the *same* prompt template,
answer grid and decision rule, to rating data from elsewhere. :func:`with_prompt_of` swaps only
the data under a task, so any change in the metric comes from the inputs, not from a new prompt.
:func:`drop_table` reports each metric in domain and out of domain with bootstrap intervals, and
the drop between them with its own interval (the two sets are resampled independently).

The out-of-domain sets (product review sentences, SICK, the VADER lexicon) are read and converted
to rating CSVs by :mod:`workbench.tasks.rating_sets`::

    conversion = snippets_to_csv(hutto_snippets_path(), cache_dir() / "ood" / "amazon_1to5.csv")
    ood = get_task("table", path=str(conversion.path), text_column="text", label_column="rating")
    transfer = with_prompt_of(get_task("sst5"), ood)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from workbench.inference.protocol import ChatEngine
from workbench.lifecycle.evaluation import predict
from workbench.metric_aware.bootstrap import BootstrapResult
from workbench.metric_aware.decision import from_grid
from workbench.metric_aware.experiments import RULES
from workbench.metric_aware.metrics import get_metric
from workbench.tasks import Example, Task
from workbench.tasks.grid import snap_to_grid

# The Bayes-optimal rules of the pattern metrics (their cards), applied to the exact distribution.
EXACT_RULES = {f"exact {name}": rule for name, rule in RULES.items()}


def with_prompt_of(template: Task, data: Task, name: str | None = None) -> Task:
    """``template``'s prompt, parser, grid and answers over ``data``'s examples.

    Args:
        template: the in-domain task (its instruction, rendering, parser and grid are kept).
        data: the task whose examples to use (e.g. a ``"table"`` task over your own file).
        name: the new task's name; default ``"<data name> (as <template name>)"``.

    Raises:
        ValueError: when the two grids differ, so the same decision rule would not apply.
    """
    if list(template.grid or []) != list(data.grid or []):
        raise ValueError(f"grids differ: {template.name} has {template.grid}, {data.name} has {data.grid}")
    # A fresh _cache: replace() would otherwise share the template's cache of loaded splits.
    return replace(
        template,
        name=name or f"{data.name} (as {template.name})",
        load=data.load,
        fewshot_split=data.fewshot_split,
        _cache={},
    )


# ------------------------------------------------------------------------------- the drop


def rule_predictions(
    engine: ChatEngine, task: Task, examples: list[Example], shots: list[Example] = ()
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Exact answer distribution of each example (:meth:`Engine.score`) and each rule's answer.

    Returns:
        (gold (n,), {rule name: predictions (n,)} for :data:`EXACT_RULES`, outside mass (n,)).
    """
    scored = predict(engine, task, examples, shots)
    distribution = from_grid(task.grid, scored.probs)
    return scored.targets, {name: rule(distribution) for name, rule in EXACT_RULES.items()}, scored.outside_mass


@dataclass(frozen=True)
class Drop:
    """One metric in domain, out of domain, and the drop between them.

    Attributes:
        metric: metric name.
        in_domain: the metric on the in-domain set, with its bootstrap interval.
        out_of_domain: the same on the out-of-domain set.
        drop: how much worse the out-of-domain value is (positive: worse), with an interval
            from independent resamples of the two sets: ``out - in`` for losses such as RMSE,
            ``in - out`` for scores such as exact match.
    """

    metric: str
    in_domain: BootstrapResult
    out_of_domain: BootstrapResult
    drop: BootstrapResult


def _resampled(
    spec, predictions: np.ndarray, references: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> tuple[float, np.ndarray]:
    """The metric on the full set and on ``n_resamples`` bootstrap resamples of it."""
    n = len(references)
    indices = np.vstack([np.arange(n), rng.integers(0, n, size=(n_resamples, n))])  # row 0: the full set
    if spec.kind == "item":
        scores = np.asarray(spec(predictions, references), dtype=float)[indices].mean(axis=1)
    elif spec.batched:
        scores = np.asarray(spec(predictions[indices], references[indices]), dtype=float)
    else:
        scores = np.array([spec(predictions[rows], references[rows]) for rows in indices], dtype=float)
    return float(scores[0]), scores[1:]


def _interval(estimate: float, scores: np.ndarray, confidence: float) -> BootstrapResult:
    finite = scores[np.isfinite(scores)]
    if not finite.size:
        return BootstrapResult(estimate, math.nan, math.nan, confidence, 0)
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return BootstrapResult(estimate, float(low), float(high), confidence, int(finite.size))


def metric_drop(
    metric: str,
    in_predictions,
    in_gold,
    out_predictions,
    out_gold,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Drop:
    """A metric on two independent item sets and the drop from the first to the second.

    Args:
        metric: a registered numeric metric ("rmse", "mae", "exact_match", "spearman", ...).
        in_predictions: (n,) predictions on the in-domain set.
        in_gold: (n,) its gold values.
        out_predictions: (m,) predictions on the out-of-domain set.
        out_gold: (m,) its gold values.
        n_resamples: bootstrap resamples of each set.
        confidence: nominal coverage of the percentile intervals.
        seed: seeds both sets' resamples.

    Returns:
        A :class:`Drop`; the drop's interval comes from pairing the r-th resample of one set with
        the r-th of the other, which, as the sets are independent, samples the difference.
    """
    spec = get_metric(metric)
    rng = np.random.default_rng(seed)
    sides = []
    for predictions, gold in ((in_predictions, in_gold), (out_predictions, out_gold)):
        predictions, gold = np.asarray(predictions, dtype=float), np.asarray(gold, dtype=float)
        if len(predictions) != len(gold) or not len(gold):
            raise ValueError("predictions and gold must be non-empty and of the same length")
        sides.append(_resampled(spec, predictions, gold, n_resamples, rng))
    (in_value, in_scores), (out_value, out_scores) = sides
    sign = 1.0 if spec.higher_is_better else -1.0
    return Drop(
        metric,
        _interval(in_value, in_scores, confidence),
        _interval(out_value, out_scores, confidence),
        _interval(sign * (in_value - out_value), sign * (in_scores - out_scores), confidence),
    )


def drop_table(
    in_domain: tuple[np.ndarray, dict[str, np.ndarray]],
    out_of_domain: tuple[np.ndarray, dict[str, np.ndarray]],
    metrics: tuple[str, ...] = ("rmse", "mae", "exact_match", "spearman"),
    grid=None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (decision rule, metric): in-domain, out-of-domain and drop, with intervals.

    Args:
        in_domain: (gold, {rule: predictions}) as from :func:`rule_predictions`.
        out_of_domain: the same for the other set; it must have the same rules.
        metrics: metric names.
        grid: the answer grid; exact match compares with the gold value snapped onto it (the
            lexicon's gold values are means of ratings, such as 3.85).
        n_resamples: bootstrap resamples.
        confidence: interval coverage.
        seed: bootstrap seed.
    """
    grid = None if grid is None else np.asarray(grid, dtype=float)
    rows = []
    for rule, in_predictions in in_domain[1].items():
        for metric in metrics:
            gold_in, gold_out = in_domain[0], out_of_domain[0]
            if metric == "exact_match":
                gold_in, gold_out = (
                    snap_to_grid(np.asarray(gold_in, float), grid),
                    snap_to_grid(np.asarray(gold_out, float), grid),
                )
            result = metric_drop(
                metric, in_predictions, gold_in, out_of_domain[1][rule], gold_out, n_resamples, confidence, seed
            )
            row = {"rule": rule, "metric": metric}
            for column, value in (
                ("in_domain", result.in_domain),
                ("out_of_domain", result.out_of_domain),
                ("drop", result.drop),
            ):
                row.update({column: value.estimate, f"{column}_low": value.low, f"{column}_high": value.high})
            row["significant"] = bool(result.drop.low > 0 or result.drop.high < 0)
            rows.append(row)
    return pd.DataFrame(rows)
