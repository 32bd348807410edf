"""Percentile bootstrap confidence intervals for any registered metric.

Item metrics are scored once per item and each resample averages those scores; corpus metrics
are recomputed on every resample (all resamples in one call for metrics registered as
``batched``). Resampling indices come from a seeded ``numpy.random.Generator``, so a result is
reproducible from its seed.

>>> result = bootstrap_ci("absolute_error", [1.0, 2.0, 3.0, 4.0], [1.0, 2.5, 2.0, 4.0], seed=0)
>>> result.estimate, result.low <= result.estimate <= result.high, result.n_resamples
(0.375, True, 1000)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workbench.metric_aware.metrics import MetricCard, get_metric

# Upper bound on resampled elements (resamples x items) materialised at once.
_CHUNK_ELEMENTS = 1_000_000


@dataclass(frozen=True)
class BootstrapResult:
    """A point estimate with its percentile bootstrap interval.

    Attributes:
        estimate: The metric on the full data (not the mean of the resamples).
        low: Lower end of the interval.
        high: Upper end of the interval.
        confidence: Nominal coverage, e.g. 0.95.
        n_resamples: Resamples the interval is based on: those requested minus any on which
            the metric was undefined (e.g. Pearson on a resample with constant predictions).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int


@dataclass(frozen=True)
class PairedBootstrapResult:
    """Difference ``metric(A) - metric(B)`` on shared resamples.

    Attributes:
        difference: Estimate and interval of the difference.
        p_value: Two-sided bootstrap p-value for "no difference": twice the smaller share of
            resampled differences on either side of zero (capped at 1).
    """

    difference: BootstrapResult
    p_value: float


def _resample_indices(rng: np.random.Generator, n_items: int, n_resamples: int):
    """Yield (chunk, n_items) index arrays, n_resamples rows in all."""
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_items))
    for start in range(0, n_resamples, chunk):
        yield rng.integers(0, n_items, size=(min(chunk, n_resamples - start), n_items))


def _resampler(spec: MetricCard, predictions: np.ndarray, references: np.ndarray, params: dict):
    """A function mapping (rows, n) resample indices to the metric on each resample (rows,)."""
    if spec.kind == "item":
        # Score each item once; a resample's score is then just a mean of gathered scores.
        item_scores = np.asarray(spec(predictions, references, **params), dtype=float)
        return lambda indices: item_scores[indices].mean(axis=1)
    if spec.batched:
        return lambda indices: np.asarray(spec(predictions[indices], references[indices], **params), dtype=float)
    return lambda indices: np.array(
        [spec(predictions[rows], references[rows], **params) for rows in indices], dtype=float
    )


def _interval(estimate: float, scores: np.ndarray, confidence: float) -> BootstrapResult:
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return BootstrapResult(estimate, np.nan, np.nan, confidence, 0)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return BootstrapResult(estimate, float(low), float(high), confidence, int(finite.size))


def _check_arguments(n_items: int, n_resamples: int, confidence: float) -> None:
    if n_items == 0:
        raise ValueError("cannot bootstrap an empty set")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def bootstrap_ci(
    metric: str | MetricCard,
    predictions: Sequence | np.ndarray,
    references: Sequence | np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    **metric_params,
) -> BootstrapResult:
    """Percentile bootstrap interval for a metric over n items.

    Args:
        metric: Registered metric name or spec; item metrics are averaged over items.
        predictions: (n,) predictions (numbers or strings).
        references: (n,) references.
        n_resamples: Number of bootstrap resamples.
        confidence: Nominal coverage of the interval.
        seed: Seed of the numpy Generator that draws the resamples.
        **metric_params: Passed to the metric, e.g. ``quantile=0.9``.

    Returns:
        A :class:`BootstrapResult`.
    """
    spec = get_metric(metric)
    predictions, references = np.asarray(predictions), np.asarray(references)
    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    n_items = len(references)
    _check_arguments(n_items, n_resamples, confidence)
    score_resamples = _resampler(spec, predictions, references, metric_params)
    every_item = np.arange(n_items)[None, :]  # the full data as a one-row "resample"
    estimate = float(score_resamples(every_item)[0])
    rng = np.random.default_rng(seed)
    batches = _resample_indices(rng, n_items, n_resamples)
    scores = np.concatenate([score_resamples(indices) for indices in batches])
    return _interval(estimate, scores, confidence)


def paired_bootstrap(
    metric: str | MetricCard,
    predictions_a: Sequence | np.ndarray,
    predictions_b: Sequence | np.ndarray,
    references: Sequence | np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    **metric_params,
) -> PairedBootstrapResult:
    """Paired bootstrap of ``metric(A) - metric(B)``: both systems see the same resamples.

    Pairing removes the between-item variance the two systems share, so this interval is
    usually much narrower than comparing two separate intervals. Arguments are as in
    :func:`bootstrap_ci`.

    >>> refs = np.arange(50.0)
    >>> result = paired_bootstrap("absolute_error", refs + 1.0, refs + 2.0, refs)
    >>> result.difference.estimate, result.difference.low, result.p_value
    (-1.0, -1.0, 0.0)
    """
    spec = get_metric(metric)
    predictions_a, predictions_b = np.asarray(predictions_a), np.asarray(predictions_b)
    references = np.asarray(references)
    if not len(predictions_a) == len(predictions_b) == len(references):
        raise ValueError("both systems must be scored on the same items")
    n_items = len(references)
    _check_arguments(n_items, n_resamples, confidence)
    score_a = _resampler(spec, predictions_a, references, metric_params)
    score_b = _resampler(spec, predictions_b, references, metric_params)
    every_item = np.arange(n_items)[None, :]
    estimate = float(score_a(every_item)[0] - score_b(every_item)[0])
    rng = np.random.default_rng(seed)
    batches = _resample_indices(rng, n_items, n_resamples)
    differences = np.concatenate([score_a(indices) - score_b(indices) for indices in batches])
    interval = _interval(estimate, differences, confidence)
    finite = differences[np.isfinite(differences)]
    if finite.size == 0:
        return PairedBootstrapResult(interval, np.nan)
    one_sided = min(np.mean(finite <= 0.0), np.mean(finite >= 0.0))
    return PairedBootstrapResult(interval, float(min(1.0, 2.0 * one_sided)))
