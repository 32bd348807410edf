"""Corpus scores of generated texts against several references per item, with paired bootstrap intervals.

Every output set (a decision rule's outputs, a published system's) is scored by the same code, in
two steps: :func:`item_statistics` turns each item into additive sufficient statistics, and
:func:`corpus_value` turns a sum of them into the corpus score. A bootstrap resample is a weighted
sum of the same rows, so a resample costs one matrix product, and resampling the same items for
two systems gives paired intervals and tests (Koehn, "Statistical Significance Tests for Machine
Translation Evaluation", EMNLP 2004).

Metrics (:data:`METRICS`), all against every reference of the item:

* ``bleu``, ``chrf``: sacrebleu's corpus BLEU and chrF with multiple references (its n-gram
  statistics per sentence, summed; chrF keeps each sentence's best reference, as sacrebleu does);
* ``rougel``: ROUGE-L F-measure (rouge-score tokenisation) against the best reference, averaged;
* ``cosine``: cosine of all-MiniLM-L6-v2 embeddings against the best reference, averaged;
* ``slot_error``: values of the meaning representation the text misses / all values
  (:mod:`workbench.metric_aware.slots`); lower is better.

>>> stats = item_statistics(["a pub by the river"], [["a pub by the river", "a pub"]], metrics=("bleu", "chrf"))
>>> [round(corpus_value(name, stats[name].sum(axis=0)), 1) for name in ("bleu", "chrf")]
[100.0, 100.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sacrebleu.metrics import BLEU, CHRF

from workbench.metric_aware.pairwise import cosine_matrix, rouge_l_matrix
from workbench.metric_aware.slots import slot_counts

METRICS: dict[str, bool] = {"bleu": True, "chrf": True, "rougel": True, "cosine": True, "slot_error": False}
"""Metric name -> higher is better."""


@dataclass(frozen=True)
class Interval:
    """A corpus score with its percentile bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float


def _streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-item reference lists as sacrebleu's reference streams (None where an item has fewer)."""
    width = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def item_statistics(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    mrs: Sequence[str] | None = None,
    metrics: Sequence[str] = tuple(METRICS),
) -> dict[str, np.ndarray]:
    """Additive statistics of each item for each metric.

    Args:
        hypotheses: n output texts.
        references: n lists of reference texts (at least one each).
        mrs: n meaning representations; needed for ``slot_error``.
        metrics: names from :data:`METRICS`.

    Returns:
        ``{metric: (n, k) array}``; :func:`corpus_value` of the column sums is the corpus score
        (ROUGE-L and cosine: (value, 1) per item; slot error: (missing, values)).

    Raises:
        ValueError: lengths that differ, an item without references, or ``slot_error`` without MRs.
    """
    if len(hypotheses) != len(references) or (mrs is not None and len(mrs) != len(hypotheses)):
        raise ValueError(f"{len(hypotheses)} hypotheses, {len(references)} reference lists, MRs {mrs and len(mrs)}")
    if any(not refs for refs in references):
        raise ValueError(f"item {next(i for i, r in enumerate(references) if not r)} has no reference")
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise KeyError(f"unknown metric(s) {sorted(unknown)}; known: {list(METRICS)}")
    hypotheses = list(hypotheses)
    stats = {}
    if "bleu" in metrics:
        stats["bleu"] = np.array(BLEU()._extract_corpus_statistics(hypotheses, _streams(references)), dtype=float)
    if "chrf" in metrics:
        stats["chrf"] = np.array(CHRF()._extract_corpus_statistics(hypotheses, _streams(references)), dtype=float)
    if "rougel" in metrics:
        best = [rouge_l_matrix([h], list(r)).max() for h, r in zip(hypotheses, references)]
        stats["rougel"] = np.column_stack([best, np.ones(len(best))])
    if "cosine" in metrics:
        stats["cosine"] = np.column_stack([_best_cosine(hypotheses, references), np.ones(len(hypotheses))])
    if "slot_error" in metrics:
        if mrs is None:
            raise ValueError("slot_error needs the meaning representations (mrs=)")
        stats["slot_error"] = slot_counts(mrs, hypotheses).astype(float)
    return stats


def _best_cosine(hypotheses: list[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    """Each hypothesis's highest cosine over its references; one embedding call for all texts."""
    flat = [ref for refs in references for ref in refs]
    ends = np.cumsum([len(refs) for refs in references])
    similarity = cosine_matrix(hypotheses, flat)
    return np.array([similarity[i, end - len(refs) : end].max() for i, (end, refs) in enumerate(zip(ends, references))])


def corpus_value(metric: str, totals: np.ndarray) -> float | np.ndarray:
    """The corpus score from column sums of :func:`item_statistics` (or (R, k) sums of R resamples).

    BLEU and chrF in [0, 100] as sacrebleu reports them; ROUGE-L and cosine as means; slot error as
    a share in [0, 1].
    """
    totals = np.asarray(totals, dtype=float)
    if totals.ndim == 2 and metric in ("bleu", "chrf"):
        return np.array([corpus_value(metric, row) for row in totals])
    if metric == "bleu":
        return BLEU()._compute_score_from_stats([int(round(v)) for v in totals]).score
    if metric == "chrf":
        return CHRF()._compute_score_from_stats([int(round(v)) for v in totals]).score
    if metric in ("rougel", "cosine", "slot_error"):  # (sum, count) and (missing, values): ratios of sums
        return totals[..., 0] / np.maximum(totals[..., 1], 1e-12)
    raise KeyError(f"unknown metric {metric!r}; known: {list(METRICS)}")


def resample_weights(n_items: int, n_resamples: int, seed: int = 0) -> np.ndarray:
    """(R, n) bootstrap weights: how often each item is drawn in each of R resamples of n items.

    >>> resample_weights(5, 3).sum(axis=1).tolist()
    [5.0, 5.0, 5.0]
    """
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=n_resamples).astype(float)


def scored(metric: str, stats: np.ndarray, weights: np.ndarray, confidence: float = 0.95) -> Interval:
    """The corpus score of ``stats`` (n, k) and its percentile interval over ``weights`` (R, n)."""
    value = float(corpus_value(metric, stats.sum(axis=0)))
    resampled = corpus_value(metric, weights @ stats)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return Interval(value, float(low), float(high))


def paired_difference(
    metric: str, stats_a: np.ndarray, stats_b: np.ndarray, weights: np.ndarray, confidence: float = 0.95
) -> dict:
    """System A minus system B on the same items and resamples: the difference, its interval and a p-value.

    Returns:
        ``{"difference", "ci_low", "ci_high", "p_better"}``: ``p_better`` is the share of resamples
        in which A is not better than B in the metric's direction (a one-sided paired bootstrap
        p-value for "A beats B"; Koehn 2004).
    """
    a, b = stats_a, stats_b
    difference = float(corpus_value(metric, a.sum(axis=0)) - corpus_value(metric, b.sum(axis=0)))
    resampled = corpus_value(metric, weights @ a) - corpus_value(metric, weights @ b)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail])
    sign = 1.0 if METRICS[metric] else -1.0
    p_better = float((sign * resampled <= 0).mean())
    return {"difference": difference, "ci_low": float(low), "ci_high": float(high), "p_better": p_better}


def score_systems(
    stats: dict[str, dict[str, np.ndarray]], n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> pd.DataFrame:
    """One row per (system, metric): ``system, metric, value, ci_low, ci_high, items``.

    Args:
        stats: ``{system: item_statistics(...)}``, all over the same items in the same order.
        n_resamples: bootstrap resamples (the same item draws for every system: paired intervals).
        seed: the resampling seed.
        confidence: interval level.
    """
    sizes = {len(next(iter(s.values()))) for s in stats.values()}
    if len(sizes) != 1:
        raise ValueError(f"systems are scored on different numbers of items: {sizes}")
    weights = resample_weights(sizes.pop(), n_resamples, seed)
    rows = [
        {"system": system, "metric": metric, **vars(scored(metric, values, weights, confidence)), "items": len(values)}
        for system, by_metric in stats.items()
        for metric, values in by_metric.items()
    ]
    return pd.DataFrame(rows)
