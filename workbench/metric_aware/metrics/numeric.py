"""Metrics of point answers: item losses and utilities (broadcasting numpy expressions) and corpus
statistics (RMSE, MAE, correlations, kappa).

Item metrics are plain numpy ufunc expressions, so they broadcast: the decision module evaluates them
on a (items, candidates, outcomes) cube in one call. The batched corpus metrics reduce over the last
axis only, so (R, n) inputs give R values at once (the bootstrap scores all resamples in one call).
"""

from __future__ import annotations

from math import inf

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import cohen_kappa_score

from workbench.metric_aware.metrics.card import register_metric

_DECISIONS = "Lukasik et al., Metric-aware LLM inference for regression and scoring, arXiv 2403.04182 (2024)"
_COUPLED = (
    "couples items (ranks, covariances, a confusion matrix): no per-item answer is optimal; "
    "the mean is the usual surrogate"
)


def _as_float(values) -> np.ndarray:
    return np.asarray(values, dtype=float)


@register_metric(
    "squared_error",
    kind="item",
    data="numeric",
    higher_is_better=False,
    bayes_rule="mean",
    value_range=(0, inf),
    citation=f"least squares: Gauss, Theoria motus (1809); the mean as its Bayes rule: {_DECISIONS}",
)
def squared_error(predictions, references) -> np.ndarray:
    """Squared error per item.

    Args:
        predictions: Array of shape (n,) (or anything broadcastable with ``references``).
        references: Array of shape (n,).

    Returns:
        Array of shape (n,).

    >>> squared_error([1.0, 3.0], [2.0, 2.5])
    array([1.  , 0.25])
    """
    return (_as_float(predictions) - _as_float(references)) ** 2


@register_metric(
    "absolute_error",
    kind="item",
    data="numeric",
    higher_is_better=False,
    bayes_rule="median",
    value_range=(0, inf),
    citation=f"least absolute deviations: Laplace (1774); the median as its Bayes rule: {_DECISIONS}",
)
def absolute_error(predictions, references) -> np.ndarray:
    """Absolute error per item; shapes as in :func:`squared_error`.

    >>> absolute_error([1.0, 3.0], [2.0, 2.5])
    array([1. , 0.5])
    """
    return np.abs(_as_float(predictions) - _as_float(references))


@register_metric(
    "exact_match",
    kind="item",
    data="numeric",
    higher_is_better=True,
    bayes_rule="mode",
    value_range=(0, 1),
    citation=_DECISIONS,
    rule_note="the mode pools equal values exactly; with a tolerance wider than the answer spacing use grid_search",
)
def exact_match(predictions, references, *, tolerance: float = 1e-9) -> np.ndarray:
    """1.0 where a numeric prediction equals the reference up to ``tolerance``, else 0.0.

    The tolerance absorbs float noise from parsing ("0.30" vs 0.1 + 0.2); a NaN prediction (an
    answer that failed to parse) never matches.

    Args:
        predictions: Array of shape (n,).
        references: Array of shape (n,).
        tolerance: Largest absolute difference that still counts as equal.

    Returns:
        Array of shape (n,) with values in {0.0, 1.0}.

    >>> exact_match([0.1 + 0.2, 2.0, float("nan")], [0.3, 3.0, 1.0])
    array([1., 0., 0.])
    """
    return (np.abs(_as_float(predictions) - _as_float(references)) <= tolerance).astype(float)


@register_metric(
    "accuracy",
    kind="item",
    data="numeric",
    higher_is_better=True,
    bayes_rule="mode",
    value_range=(0, 1),
    citation="0-1 loss; the mode as its Bayes rule: Berger, Statistical Decision Theory and Bayesian Analysis (1985)",
)
def accuracy(predictions, references) -> np.ndarray:
    """1.0 where the predicted label equals the reference label, else 0.0.

    Labels are compared with ``==``, so class ids (the usual numeric coding) and string labels
    both work.

    >>> accuracy([0, 1, 2], [0, 2, 2])
    array([1., 0., 1.])
    """
    return (np.asarray(predictions) == np.asarray(references)).astype(float)


@register_metric(
    "pinball",
    kind="item",
    data="numeric",
    higher_is_better=False,
    bayes_rule="quantile",
    value_range=(0, inf),
    citation="Koenker & Bassett, Regression Quantiles, Econometrica 46 (1978)",
    rule_note="the quantile at the metric's own level (parameter quantile)",
)
def pinball(predictions, references, *, quantile: float = 0.5) -> np.ndarray:
    """Pinball (quantile) loss per item; its Bayes-optimal prediction is the ``quantile``.

    Under-prediction costs ``quantile`` per unit and over-prediction ``1 - quantile``.

    Args:
        predictions: Array of shape (n,).
        references: Array of shape (n,).
        quantile: Level q in (0, 1); q = 0.5 gives half the absolute error.

    Returns:
        Array of shape (n,).

    >>> pinball([1.0, 3.0], [2.0, 2.0], quantile=0.9)
    array([0.9, 0.1])
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    residual = _as_float(references) - _as_float(predictions)
    return np.maximum(quantile * residual, (quantile - 1.0) * residual)


@register_metric(
    "within_tolerance",
    kind="item",
    data="numeric",
    higher_is_better=True,
    bayes_rule="grid_search",
    value_range=(0, 1),
    citation="tolerance accuracy (e.g. off-by-one accuracy of ordinal ratings)",
    rule_note="the best answer maximises the mass within +-tolerance: an interval search, no closed form",
)
def within_tolerance(predictions, references, *, tolerance: float = 0.5) -> np.ndarray:
    """1.0 where ``|prediction - reference| <= tolerance``, else 0.0.

    The default of 0.5 suits 1-5 and 0-5 rating scales (within half a point); pass a tolerance
    on the scale of your task.

    >>> within_tolerance([1.0, 3.0, 4.6], [1.5, 2.0, 4.0], tolerance=0.5)
    array([1., 0., 0.])
    """
    return (np.abs(_as_float(predictions) - _as_float(references)) <= tolerance).astype(float)


@register_metric(
    "rmse",
    kind="corpus",
    data="numeric",
    higher_is_better=False,
    bayes_rule="mean",
    value_range=(0, inf),
    batched=True,
    citation=_DECISIONS,
    rule_note="the mean minimises the expected MSE; the square root does not commute with the expectation, "
    "so for RMSE itself it is the standard, not an exact, optimum",
)
def rmse(predictions, references) -> float | np.ndarray:
    """Root mean squared error over the last axis.

    Args:
        predictions: Array of shape (..., n).
        references: Array of shape (..., n).

    Returns:
        A float for 1-d inputs, otherwise an array of shape (...).

    >>> float(rmse([1.0, 3.0], [2.0, 2.0]))
    1.0
    """
    return np.sqrt(np.mean(squared_error(predictions, references), axis=-1))


@register_metric(
    "mae",
    kind="corpus",
    data="numeric",
    higher_is_better=False,
    bayes_rule="median",
    value_range=(0, inf),
    batched=True,
    citation=_DECISIONS,
    rule_note="a mean of absolute errors, so the per-item median is exactly optimal",
)
def mae(predictions, references) -> float | np.ndarray:
    """Mean absolute error over the last axis; shapes as in :func:`rmse`.

    >>> float(mae([1.0, 3.0], [2.0, 2.5]))
    0.75
    """
    return np.mean(absolute_error(predictions, references), axis=-1)


@register_metric(
    "pearson",
    kind="corpus",
    data="numeric",
    higher_is_better=True,
    bayes_rule=None,
    value_range=(-1, 1),
    batched=True,
    citation="Pearson, Philosophical Transactions of the Royal Society A 187 (1896)",
    rule_note=_COUPLED,
)
def pearson(predictions, references) -> float | np.ndarray:
    """Pearson correlation over the last axis; NaN when either side is constant.

    Shapes as in :func:`rmse`.

    >>> round(float(pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0])), 4)
    0.9934
    """
    x = _as_float(predictions)
    y = _as_float(references)
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x * y).sum(axis=-1) / denominator
    # Rounding can push |r| a hair past 1; scipy clips the same way.
    return np.clip(r, -1.0, 1.0)


@register_metric(
    "spearman",
    kind="corpus",
    data="numeric",
    higher_is_better=True,
    bayes_rule=None,
    value_range=(-1, 1),
    batched=True,
    citation="Spearman, The proof and measurement of association between two things, Am. J. Psychol. 15 (1904)",
    rule_note=_COUPLED,
)
def spearman(predictions, references) -> float | np.ndarray:
    """Spearman rank correlation (average ranks for ties) over the last axis.

    Shapes as in :func:`rmse`.

    >>> float(spearman([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]))
    1.0
    """
    return pearson(rankdata(predictions, axis=-1), rankdata(references, axis=-1))


@register_metric(
    "quadratic_weighted_kappa",
    kind="corpus",
    data="numeric",
    higher_is_better=True,
    bayes_rule=None,
    value_range=(-1, 1),
    citation="Cohen, Weighted kappa, Psychological Bulletin 70 (1968)",
    rule_note=_COUPLED,
)
def quadratic_weighted_kappa(predictions, references) -> float:
    """Cohen's kappa with quadratic weights on integer labels (sklearn).

    Args:
        predictions: Integer-valued array of shape (n,). Round continuous predictions first:
            rounding is a modelling choice, so it is not done silently here.
        references: Integer-valued array of shape (n,).

    Raises:
        ValueError: If any value is not an integer.

    >>> quadratic_weighted_kappa([1, 2, 3, 4], [1, 2, 3, 4])
    1.0
    """
    predictions = _as_float(predictions)
    references = _as_float(references)
    for values in (predictions, references):
        if not np.all(values == np.round(values)):
            raise ValueError("quadratic_weighted_kappa needs integer labels; round first")
    return float(cohen_kappa_score(references.astype(int), predictions.astype(int), weights="quadratic"))
