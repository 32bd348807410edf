"""Metric-aware decisions: the Bayes-optimal point prediction under a predictive distribution.

Following Lukasik et al., "Metric-aware LLM inference for regression and scoring" (arXiv
2403.04182): rather than reporting one sampled answer, pick the prediction that minimises the
expected loss (or maximises the expected utility) of the metric that will be used to evaluate.

Both input forms become one :class:`Distribution`, a weighted discrete distribution per item:

* samples (:func:`from_samples`): numeric answers sampled from the model, one list per item.
  Entries that are not finite numbers (parse failures arriving as None, NaN or junk strings)
  are counted in ``n_invalid`` and carry no weight; they are never dropped silently.
* an exact distribution over a grid (:func:`from_grid`): grid values (K,) and probs (B, K),
  e.g. the model's probabilities of the answers "1" to "5".

Rules, each returning predictions of shape (B,): :func:`mean` (squared error), :func:`median`
(absolute error), :func:`quantile` (pinball loss), :func:`mode` (exact match, accuracy) and
:func:`grid_search` for any numeric item metric. :func:`decide` picks the rule stated on the metric's
card (:mod:`workbench.metric_aware.metrics`).
An item with no valid sample gets a NaN prediction, visible in ``Decision.n_valid == 0``, so the
caller can fall back (for example to a greedy answer) knowingly.

>>> dist = from_samples([[1, 2, 2, 9], [3, None, "n/a"]])
>>> mean(dist), median(dist), mode(dist)
(array([3.5, 3. ]), array([2., 3.]), array([2., 3.]))
>>> dist.n_invalid
array([0, 2])
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workbench.metric_aware.metrics import MetricCard, get_metric

# Relative slack when comparing cumulative probabilities with a quantile level: grid
# probabilities that should sum to exactly 0.5 often come out as 0.49999999999999994.
# Sample counts are kept as integer weights, for which the slack is far below one count.
_CDF_SLACK = 1e-12

# Upper bound on elements of the (items, candidates, outcomes) loss cube held at once.
_CUBE_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class Distribution:
    """Weighted discrete predictive distributions for B items.

    Attributes:
        values: (B, K) support points; slots without a valid value hold NaN.
        weights: (B, K) non-negative weights, 0 on slots without a valid value. Rows need not
            sum to one: samples keep integer counts so that ties in the CDF are exact.
        n_invalid: (B,) number of samples that were not finite numbers (0 for grids).
    """

    values: np.ndarray
    weights: np.ndarray
    n_invalid: np.ndarray

    @property
    def n_items(self) -> int:
        return self.values.shape[0]

    @property
    def n_valid(self) -> np.ndarray:
        """(B,) number of support slots carrying weight (valid samples, for samples)."""
        return np.count_nonzero(self.weights > 0, axis=1)

    @property
    def total_weight(self) -> np.ndarray:
        return self.weights.sum(axis=1)


def _parse_number(entry) -> float:
    """A finite float, or NaN for anything that is not one (counted as invalid by the caller)."""
    if entry is None or isinstance(entry, bool):
        return np.nan
    try:
        number = float(entry)
    except (TypeError, ValueError):
        return np.nan
    return number if np.isfinite(number) else np.nan


def from_samples(samples: Sequence[Sequence] | np.ndarray) -> Distribution:
    """Empirical distributions from numeric samples, one sequence per item.

    Args:
        samples: A (B, S) array, or B sequences of possibly different lengths. Entries that
            are None, NaN, infinite, booleans or not convertible by ``float()`` are invalid.

    Returns:
        A :class:`Distribution` with one unit of weight per valid sample and the count of
        invalid samples per item. Padding of ragged input is neither valid nor invalid.

    >>> d = from_samples([[1.5, "2"], [float("nan")]])
    >>> d.values, d.n_valid, d.n_invalid
    (array([[1.5, 2. ],
           [nan, nan]]), array([2, 0]), array([0, 1]))
    """
    if isinstance(samples, np.ndarray) and samples.ndim == 2 and samples.dtype.kind in "fiu":
        values = samples.astype(float)
        valid = np.isfinite(values)
        n_invalid = (~valid).sum(axis=1)
    else:
        rows = [[_parse_number(entry) for entry in item] for item in samples]
        width = max((len(row) for row in rows), default=0)
        values = np.full((len(rows), width), np.nan)
        for i, row in enumerate(rows):
            values[i, : len(row)] = row
        valid = np.isfinite(values)
        n_invalid = np.array([len(row) for row in rows], dtype=int) - valid.sum(axis=1)
    values = np.where(valid, values, np.nan)
    return Distribution(values, valid.astype(float), n_invalid.astype(int))


def from_grid(grid: Sequence[float] | np.ndarray, probs: np.ndarray) -> Distribution:
    """Exact distributions over a shared grid of values.

    Args:
        grid: (K,) finite support values, e.g. ``[1, 2, 3, 4, 5]``.
        probs: (B, K) non-negative probabilities (or unnormalised weights) per item.

    >>> d = from_grid([1, 2, 3], [[0.2, 0.5, 0.3]])
    >>> mean(d), mode(d)
    (array([2.1]), array([2.]))
    """
    grid = np.asarray(grid, dtype=float)
    probs = np.atleast_2d(np.asarray(probs, dtype=float))
    if grid.ndim != 1 or probs.shape[1] != grid.shape[0]:
        raise ValueError(f"grid {grid.shape} and probs {probs.shape} do not match")
    if not np.all(np.isfinite(grid)):
        raise ValueError("grid values must be finite")
    if np.any(probs < 0) or not np.all(np.isfinite(probs)):
        raise ValueError("probs must be finite and non-negative")
    values = np.broadcast_to(grid, probs.shape)
    return Distribution(values, probs, np.zeros(probs.shape[0], dtype=int))


def _nan_where_empty(predictions: np.ndarray, distribution: Distribution) -> np.ndarray:
    return np.where(distribution.total_weight > 0, predictions, np.nan)


def _sorted_support(distribution: Distribution) -> tuple[np.ndarray, np.ndarray]:
    """Values and weights sorted ascending per item, empty slots (as +inf) last."""
    keys = np.where(distribution.weights > 0, distribution.values, np.inf)
    order = np.argsort(keys, axis=1, kind="stable")
    return np.take_along_axis(keys, order, 1), np.take_along_axis(distribution.weights, order, 1)


def mean(distribution: Distribution) -> np.ndarray:
    """Expected value per item: Bayes-optimal for squared error. Shape (B,)."""
    total = distribution.total_weight
    weighted = np.where(distribution.weights > 0, distribution.values, 0.0) * distribution.weights
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty(weighted.sum(axis=1) / total, distribution)


def quantile(distribution: Distribution, level: float) -> np.ndarray:
    """The ``level``-quantile per item: Bayes-optimal for pinball loss at that level. Shape (B,).

    Every point between the lower quantile (smallest v with F(v) >= level) and the upper one
    (smallest v with F(v) > level) minimises the expected pinball loss; the midpoint is
    returned, i.e. numpy's ``method="averaged_inverted_cdf"``. For level 0.5 on samples this
    is the ordinary median.

    >>> quantile(from_samples([[1, 2, 3, 4]]), 0.5), quantile(from_samples([[1, 2, 3, 4]]), 0.6)
    (array([2.5]), array([3.]))
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"quantile level must lie in (0, 1), got {level}")
    values, weights = _sorted_support(distribution)
    if values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    cdf = np.cumsum(weights, axis=1)
    total = cdf[:, -1:]
    slack = _CDF_SLACK * total
    lower = np.argmax(cdf >= level * total - slack, axis=1)
    upper = np.argmax(cdf > level * total + slack, axis=1)
    rows = np.arange(values.shape[0])
    with np.errstate(invalid="ignore"):
        midpoint = 0.5 * (values[rows, lower] + values[rows, upper])
    return _nan_where_empty(midpoint, distribution)


def median(distribution: Distribution) -> np.ndarray:
    """Median per item: Bayes-optimal for absolute error (weighted median for grids)."""
    return quantile(distribution, 0.5)


def mode(distribution: Distribution) -> np.ndarray:
    """Most probable value per item: Bayes-optimal for exact match and accuracy. Shape (B,).

    Equal values are pooled first (samples "3" and 3.0 are one answer); ties between values
    go to the smallest. Values are compared exactly: when exact match is scored with a
    tolerance wider than the spacing of answers, use :func:`grid_search` instead.

    >>> mode(from_samples([[5, 1, 5, 1, 2]]))
    array([1.])
    """
    values, weights = _sorted_support(distribution)
    n_items, width = values.shape
    if width == 0:
        return np.full(n_items, np.nan)
    starts_group = np.ones(values.shape, dtype=bool)
    starts_group[:, 1:] = values[:, 1:] != values[:, :-1]
    group = np.cumsum(starts_group, axis=1) - 1
    rows = np.arange(n_items)
    group_mass = np.zeros(values.shape)
    np.add.at(group_mass, (rows[:, None], group), weights)
    # argmax takes the first maximum, i.e. the smallest value, because groups are sorted.
    best_group = np.argmax(group_mass, axis=1)
    first_slot = np.argmax(group == best_group[:, None], axis=1)
    return _nan_where_empty(values[rows, first_slot], distribution)


def _numeric_item_metric(metric: str | MetricCard) -> MetricCard:
    spec = get_metric(metric)
    if spec.kind != "item" or spec.data != "numeric":
        raise ValueError(f"{spec.name!r} is not a numeric item metric")
    return spec


def expected_metric(
    metric: str | MetricCard,
    candidates: Sequence[float] | np.ndarray,
    distribution: Distribution,
    **metric_params,
) -> np.ndarray:
    """Expected metric value of each candidate prediction under each item's distribution.

    Args:
        metric: A registered numeric item metric (name or spec).
        candidates: (C,) candidates shared by all items, or (B, C) per item (NaN = unused).
        distribution: The predictive distributions of B items.
        **metric_params: Passed to the metric, e.g. ``quantile=0.9`` or ``tolerance=0.5``.

    Returns:
        (B, C) expected values; rows of items without valid samples are NaN.

    >>> expected_metric("squared_error", [1.0, 2.0], from_samples([[1, 3]]))
    array([[2., 1.]])
    """
    spec = _numeric_item_metric(metric)
    candidates = np.asarray(candidates, dtype=float)
    candidates = np.broadcast_to(candidates, (distribution.n_items, candidates.shape[-1]))
    has_mass = distribution.weights > 0
    # Empty slots get a harmless placeholder value; their weight of zero removes them below.
    outcomes = np.where(has_mass, distribution.values, 0.0)
    n_candidates, width = candidates.shape[1], outcomes.shape[1]
    chunk = max(1, _CUBE_ELEMENTS // max(1, n_candidates * width))
    expected = np.empty(candidates.shape)
    for start in range(0, distribution.n_items, chunk):
        items = slice(start, start + chunk)
        loss = spec(candidates[items, :, None], outcomes[items, None, :], **metric_params)
        loss = np.where(has_mass[items, None, :], loss, 0.0)
        expected[items] = (loss * distribution.weights[items, None, :]).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected /= distribution.total_weight[:, None]
    return np.where(distribution.total_weight[:, None] > 0, expected, np.nan)


def grid_search(
    metric: str | MetricCard,
    candidates: Sequence[float] | np.ndarray | None,
    distribution: Distribution,
    **metric_params,
) -> np.ndarray:
    """The candidate with the best expected metric per item, for any numeric item metric.

    Args:
        metric: A registered numeric item metric; losses are minimised and utilities
            maximised according to its ``higher_is_better``.
        candidates: (C,) or (B, C) candidates; None searches each item's own support points
            (enough for absolute error, pinball, exact match; only approximate for the mean).
        distribution: The predictive distributions of B items.
        **metric_params: Passed to the metric.

    Returns:
        (B,) predictions; ties go to the first candidate (sort candidates to prefer the
        smallest); NaN for items without valid samples.

    >>> grid_search("absolute_error", np.linspace(0, 10, 101), from_samples([[1, 2, 9]]))
    array([2.])
    """
    spec = _numeric_item_metric(metric)
    candidates = distribution.values if candidates is None else np.asarray(candidates, float)
    candidates = np.broadcast_to(candidates, (distribution.n_items, candidates.shape[-1]))
    if candidates.shape[1] == 0:
        return np.full(distribution.n_items, np.nan)
    expected = expected_metric(spec, candidates, distribution, **metric_params)
    # Unused candidate slots (NaN) must never win.
    worst = -np.inf if spec.higher_is_better else np.inf
    expected = np.where(np.isnan(candidates) | np.isnan(expected), worst, expected)
    best = np.argmax(expected, axis=1) if spec.higher_is_better else np.argmin(expected, axis=1)
    chosen = candidates[np.arange(distribution.n_items), best]
    return _nan_where_empty(chosen, distribution)


def rule_for_metric(metric: str | MetricCard) -> str:
    """Name of the Bayes-optimal decision rule for a numeric metric, as its card states it.

    Raises:
        ValueError: For text metrics (use :mod:`workbench.metric_aware.mbr`) and for metrics with no
            per-item rule (Pearson, Spearman, kappa, class-probability metrics); the message gives
            the card's reason.

    >>> rule_for_metric("squared_error"), rule_for_metric("mae"), rule_for_metric("within_tolerance")
    ('mean', 'median', 'grid_search')
    """
    card = get_metric(metric)
    if card.bayes_rule == "mbr":
        raise ValueError(f"{card.name!r} is a text metric: select among samples with mbr")
    if card.bayes_rule is None:
        raise ValueError(f"{card.name!r} has no per-item Bayes-optimal rule: {card.rule_note}")
    return card.bayes_rule


POINT_RULES = {"mean": mean, "median": median, "mode": mode}
"""The closed-form rules that take only a distribution, by the names metric cards use."""


@dataclass(frozen=True)
class Decision:
    """Predictions and the bookkeeping needed to trust them.

    Attributes:
        predictions: (B,) predictions; NaN where an item had no valid sample.
        rule: The rule that produced them.
        n_valid: (B,) valid samples (support points with mass, for grids) per item.
        n_invalid: (B,) samples that were not numbers, per item.
    """

    predictions: np.ndarray
    rule: str
    n_valid: np.ndarray
    n_invalid: np.ndarray


def decide(
    distribution: Distribution | Sequence[Sequence],
    metric: str | MetricCard,
    *,
    candidates: Sequence[float] | np.ndarray | None = None,
    **metric_params,
) -> Decision:
    """Bayes-optimal predictions for ``metric``, with counts of valid and invalid samples.

    Args:
        distribution: A :class:`Distribution`, or raw samples for :func:`from_samples`.
        metric: The evaluation metric (registered name or spec).
        candidates: Candidates for ``grid_search`` rules (default: each item's support).
        **metric_params: Metric parameters, e.g. ``quantile=0.9`` for pinball.

    >>> decision = decide([[1, 2, 2, 9], ["oops"]], "absolute_error")
    >>> decision.predictions, decision.rule, decision.n_valid, decision.n_invalid
    (array([ 2., nan]), 'median', array([4, 0]), array([0, 1]))
    """
    if not isinstance(distribution, Distribution):
        distribution = from_samples(distribution)
    spec = get_metric(metric)
    rule = rule_for_metric(spec)
    if rule in POINT_RULES:
        predictions = POINT_RULES[rule](distribution)
    elif rule == "quantile":
        default_level = inspect.signature(spec.fn).parameters["quantile"].default
        predictions = quantile(distribution, metric_params.get("quantile", default_level))
    else:
        predictions = grid_search(spec, candidates, distribution, **metric_params)
    return Decision(predictions, rule, distribution.n_valid, distribution.n_invalid)
