from __future__ import annotations

import numpy as np
import pytest

from workbench.metric_aware import decision
from workbench.metric_aware.decision import (
    decide,
    expected_metric,
    from_grid,
    from_samples,
    grid_search,
    mean,
    median,
    mode,
    quantile,
    rule_for_metric,
)
from workbench.metric_aware.metrics import get_metric, list_metrics

# A fine grid of candidate predictions for brute-force checks, with the support included so
# that point masses can be hit exactly.
SUPPORT = np.arange(0.0, 10.5, 0.5)
FINE = np.union1d(np.linspace(-1.0, 11.0, 2401), SUPPORT)


@pytest.fixture
def skewed_grid():
    """Five items with random, skewed distributions over a 0-10 grid in steps of 0.5."""
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.full(SUPPORT.size, 0.3), size=5)
    return from_grid(SUPPORT, probs)


@pytest.fixture
def sample_lists():
    rng = np.random.default_rng(11)
    return [list(np.round(rng.gamma(2.0, 1.5, size=size), 1)) for size in (7, 8, 25, 1)]


def brute_force_expected(metric, candidates, distribution, **params):
    """Expected metric per item and candidate with plain loops (independent of the vectorised
    implementation)."""
    spec = get_metric(metric)
    result = np.full((distribution.n_items, len(candidates)), np.nan)
    for item in range(distribution.n_items):
        keep = distribution.weights[item] > 0
        values, weights = distribution.values[item, keep], distribution.weights[item, keep]
        for c, candidate in enumerate(candidates):
            losses = [spec(candidate, v, **params) for v in values]
            result[item, c] = np.dot(losses, weights) / weights.sum()
    return result


def test_from_samples_counts_invalid_samples_and_keeps_padding_apart():
    samples = [[1, "2.5", None, "seven", float("nan")], [float("inf"), True], [], [4.0]]
    dist = from_samples(samples)
    np.testing.assert_array_equal(dist.n_invalid, [3, 2, 0, 0])
    np.testing.assert_array_equal(dist.n_valid, [2, 0, 0, 1])
    np.testing.assert_array_equal(dist.values[0, :2], [1.0, 2.5])
    assert dist.values.shape == (4, 5)


def test_from_samples_accepts_a_float_array_with_nan():
    dist = from_samples(np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan]]))
    np.testing.assert_array_equal(dist.n_invalid, [1, 3])
    decision_ = decide(dist, "squared_error")
    np.testing.assert_array_equal(decision_.predictions, [2.0, np.nan])
    np.testing.assert_array_equal(decision_.n_valid, [2, 0])


def test_from_grid_validates_its_input():
    with pytest.raises(ValueError):
        from_grid([1, 2], [[0.5, 0.3, 0.2]])
    with pytest.raises(ValueError):
        from_grid([1, 2], [[1.2, -0.2]])
    with pytest.raises(ValueError):
        from_grid([1, np.inf], [[0.5, 0.5]])


def test_sample_rules_match_numpy(sample_lists):
    dist = from_samples(sample_lists)
    np.testing.assert_allclose(mean(dist), [np.mean(s) for s in sample_lists])
    np.testing.assert_allclose(median(dist), [np.median(s) for s in sample_lists])
    for level in (0.1, 0.25, 0.8):
        expected = [np.quantile(s, level, method="averaged_inverted_cdf") for s in sample_lists]
        np.testing.assert_allclose(quantile(dist, level), expected)


def test_weighted_median_equals_median_of_the_expanded_samples():
    # Probabilities 0.1, 0.2, 0.2, 0.5: the float CDF reaches 0.5000000000000001 at value 3,
    # which must still count as exactly one half.
    grid = np.array([1.0, 2.0, 3.0, 4.0])
    dist = from_grid(grid, [[0.1, 0.2, 0.2, 0.5], [0.25, 0.25, 0.25, 0.25], [0.6, 0.0, 0.0, 0.4]])
    expanded = [
        np.repeat(grid, [1, 2, 2, 5]),
        grid,
        np.repeat(grid, [3, 0, 0, 2]),
    ]
    np.testing.assert_allclose(median(dist), [np.median(s) for s in expanded])


@pytest.mark.parametrize(
    ("metric", "rule", "params"),
    [
        ("squared_error", mean, {}),
        ("absolute_error", median, {}),
        ("pinball", lambda d: quantile(d, 0.1), {"quantile": 0.1}),
        ("pinball", lambda d: quantile(d, 0.9), {"quantile": 0.9}),
    ],
)
def test_closed_form_rules_minimise_expected_loss_over_a_fine_grid(skewed_grid, metric, rule, params):
    predictions = rule(skewed_grid)
    at_rule = brute_force_expected(metric, predictions, skewed_grid, **params).diagonal()
    over_fine_grid = expected_metric(metric, FINE, skewed_grid, **params)
    # No candidate beats the rule, and the rule is (near) the fine grid's own optimum.
    assert np.all(at_rule <= over_fine_grid.min(axis=1) + 1e-12)
    step = FINE[1] - FINE[0]
    best_on_grid = FINE[np.argmin(over_fine_grid, axis=1)]
    if metric == "squared_error":  # unique optimum
        np.testing.assert_allclose(predictions, best_on_grid, atol=step)


def test_mode_maximises_expected_exact_match(skewed_grid):
    predictions = mode(skewed_grid)
    at_mode = brute_force_expected("exact_match", predictions, skewed_grid).diagonal()
    over_fine_grid = expected_metric("exact_match", FINE, skewed_grid)
    np.testing.assert_allclose(at_mode, over_fine_grid.max(axis=1))
    # The probabilities sum to one, so the best hit rate is the largest probability.
    np.testing.assert_allclose(at_mode, skewed_grid.weights.max(axis=1), rtol=1e-12)


def test_mode_pools_equal_values_and_breaks_ties_towards_the_smallest():
    # "3", 3 and 3.0 are one answer seen three times; item two is a tie between 5 and 1.
    dist = from_samples([[3, "3", 3.0, 1, 1, 2, 2], [5, 1, 5, 1], [2.0]])
    np.testing.assert_array_equal(mode(dist), [3.0, 1.0, 2.0])
    grid_tie = from_grid([4.0, 1.0, 2.0], [[0.4, 0.4, 0.2]])
    np.testing.assert_array_equal(mode(grid_tie), [1.0])


@pytest.mark.parametrize("metric", list_metrics(kind="item", data="numeric"))
def test_expected_metric_matches_brute_force_for_every_numeric_item_metric(skewed_grid, sample_lists, metric):
    params = {"pinball": {"quantile": 0.3}, "within_tolerance": {"tolerance": 1.0}}.get(metric, {})
    candidates = np.linspace(0.0, 10.0, 41)
    for dist in (skewed_grid, from_samples(sample_lists)):
        np.testing.assert_allclose(
            expected_metric(metric, candidates, dist, **params),
            brute_force_expected(metric, candidates, dist, **params),
            atol=1e-12,
        )


def test_grid_search_agrees_with_closed_form_rules(skewed_grid):
    np.testing.assert_allclose(grid_search("squared_error", FINE, skewed_grid), mean(skewed_grid), atol=0.005)
    for metric, rule in (("absolute_error", median), ("exact_match", mode)):
        # Both must be optimal; compare expected losses, since optima need not be unique.
        ours = brute_force_expected(metric, grid_search(metric, FINE, skewed_grid), skewed_grid)
        closed = brute_force_expected(metric, rule(skewed_grid), skewed_grid)
        np.testing.assert_allclose(ours.diagonal(), closed.diagonal(), atol=1e-12)


def test_grid_search_for_within_tolerance_finds_the_densest_window():
    # Mass 0.3 at 1, 0.35 at 5 and 0.35 at 6: a window of half-width 0.5 around 5.5 holds 0.7.
    dist = from_grid([1.0, 5.0, 6.0], [[0.3, 0.35, 0.35]])
    candidates = np.arange(0.0, 7.01, 0.25)
    prediction = grid_search("within_tolerance", candidates, dist, tolerance=0.5)
    np.testing.assert_allclose(prediction, [5.5])


def test_grid_search_on_each_items_own_samples_skips_padding_and_empty_items():
    dist = from_samples([[1.0, 2.0, 9.0], [4.0], ["n/a"]])
    predictions = grid_search("absolute_error", None, dist)
    np.testing.assert_array_equal(predictions, [2.0, 4.0, np.nan])


def test_rule_for_metric():
    assert rule_for_metric("squared_error") == "mean"
    assert rule_for_metric("rmse") == "mean"
    assert rule_for_metric("absolute_error") == "median"
    assert rule_for_metric("mae") == "median"
    assert rule_for_metric("pinball") == "quantile"
    assert rule_for_metric("exact_match") == "mode"
    assert rule_for_metric("accuracy") == "mode"
    assert rule_for_metric("within_tolerance") == "grid_search"
    for name in list_metrics(kind="item", data="numeric"):
        assert rule_for_metric(name)  # every numeric item metric has a rule
    with pytest.raises(ValueError, match="mbr"):
        rule_for_metric("chrf")
    with pytest.raises(ValueError, match="no per-item"):
        rule_for_metric("spearman")


def test_decide_applies_the_rule_and_reports_counts():
    samples = [[1, 2, 3, 10], [2, 2, "x", None], []]
    result = decide(samples, "pinball", quantile=0.9)
    assert result.rule == "quantile"
    np.testing.assert_array_equal(result.predictions, [10.0, 2.0, np.nan])
    np.testing.assert_array_equal(result.n_valid, [4, 2, 0])
    np.testing.assert_array_equal(result.n_invalid, [0, 2, 0])
    # Without an explicit level, pinball's own default (0.5) is used.
    np.testing.assert_array_equal(decide(samples, "pinball").predictions[:2], [2.5, 2.0])
    np.testing.assert_array_equal(decide(samples, "accuracy").predictions[:2], [1.0, 2.0])
    # Item 2 ties between 2.0 and 1.0; the first candidate wins.
    within = decide(samples, "within_tolerance", candidates=[2.0, 1.0, 9.5], tolerance=1.0)
    np.testing.assert_array_equal(within.predictions[:2], [2.0, 2.0])


def test_grid_search_rejects_text_and_corpus_metrics(skewed_grid):
    for name in ("chrf", "rmse"):
        with pytest.raises(ValueError, match="numeric item metric"):
            decision.grid_search(name, [1.0], skewed_grid)
