from __future__ import annotations

import numpy as np
import pytest

from workbench.metric_aware.bootstrap import BootstrapResult, bootstrap_ci, paired_bootstrap
from workbench.metric_aware.metrics import get_metric


@pytest.fixture
def scored_pairs():
    rng = np.random.default_rng(5)
    references = rng.integers(1, 6, size=80).astype(float)
    predictions = np.clip(references + rng.integers(-1, 2, size=80), 1, 5)
    return predictions, references


def loop_bootstrap(metric, predictions, references, n_resamples, confidence, seed, **params):
    """Reference implementation: the same index draws, one resample at a time."""
    spec = get_metric(metric)
    n_items = len(references)
    indices = np.random.default_rng(seed).integers(0, n_items, (n_resamples, n_items))
    scores = []
    for rows in indices:
        value = spec(predictions[rows], references[rows], **params)
        scores.append(np.mean(value) if spec.kind == "item" else value)
    tail = (1 - confidence) / 2
    return np.quantile(scores, [tail, 1 - tail])


@pytest.mark.parametrize(
    ("metric", "params"),
    [
        ("absolute_error", {}),
        ("pinball", {"quantile": 0.8}),
        ("rmse", {}),
        ("spearman", {}),
        ("quadratic_weighted_kappa", {}),  # not batched: recomputed resample by resample
    ],
)
def test_interval_matches_a_plain_loop_over_the_same_resamples(scored_pairs, metric, params):
    predictions, references = scored_pairs
    result = bootstrap_ci(metric, predictions, references, n_resamples=300, confidence=0.9, seed=3, **params)
    low, high = loop_bootstrap(metric, predictions, references, 300, 0.9, 3, **params)
    assert result.low == pytest.approx(low, abs=1e-12)
    assert result.high == pytest.approx(high, abs=1e-12)
    spec = get_metric(metric)
    full = spec(predictions, references, **params)
    assert result.estimate == pytest.approx(np.mean(full) if spec.kind == "item" else full)
    assert (result.confidence, result.n_resamples) == (0.9, 300)


def test_interval_for_a_mean_matches_the_normal_approximation():
    # absolute_error(x, 0) is x for positive x, so this is the interval for a sample mean.
    values = np.random.default_rng(0).gamma(4.0, 0.5, size=400)
    result = bootstrap_ci("absolute_error", values, np.zeros(400), n_resamples=4000)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(400)
    assert result.estimate == pytest.approx(values.mean())
    assert result.low == pytest.approx(result.estimate - half_width, abs=0.2 * half_width)
    assert result.high == pytest.approx(result.estimate + half_width, abs=0.2 * half_width)


def test_seed_makes_results_reproducible(scored_pairs):
    predictions, references = scored_pairs
    first = bootstrap_ci("pearson", predictions, references, seed=1)
    assert first == bootstrap_ci("pearson", predictions, references, seed=1)
    assert first != bootstrap_ci("pearson", predictions, references, seed=2)
    assert isinstance(first, BootstrapResult)
    assert first.low < first.estimate < first.high


def test_resamples_where_the_metric_is_undefined_are_reported():
    # Nearly constant predictions: some resamples contain no 2.0, so Pearson is NaN there.
    predictions = np.array([1.0] * 9 + [2.0])
    references = np.arange(10.0)
    result = bootstrap_ci("pearson", predictions, references, n_resamples=500)
    assert 0 < result.n_resamples < 500
    assert np.isfinite(result.low) and np.isfinite(result.high)


def test_text_metrics_bootstrap_on_strings():
    hypotheses = ["the cat sat", "a dog ran", "hello world", "good morning"]
    references = ["the cat sat", "the dog ran", "hello there", "good evening"]
    result = bootstrap_ci("chrf", hypotheses, references, n_resamples=200)
    assert 0.0 <= result.low <= result.estimate <= result.high <= 100.0


def test_paired_bootstrap_of_identical_systems_is_exactly_zero(scored_pairs):
    predictions, references = scored_pairs
    result = paired_bootstrap("mae", predictions, predictions, references)
    assert (result.difference.estimate, result.difference.low, result.difference.high) == (0, 0, 0)
    assert result.p_value == 1.0


def test_paired_bootstrap_detects_a_better_system_and_is_narrower_than_unpaired(scored_pairs):
    predictions, references = scored_pairs
    rng = np.random.default_rng(9)
    # System B moves a third of the predictions one point further from the reference.
    away = np.where(predictions >= references, 1.0, -1.0)
    worse = predictions + away * (rng.random(80) < 0.33)
    paired = paired_bootstrap("absolute_error", predictions, worse, references, seed=4)
    assert paired.difference.estimate == pytest.approx(
        np.abs(predictions - references).mean() - np.abs(worse - references).mean()
    )
    assert paired.difference.high < 0 and paired.p_value < 0.01
    a = bootstrap_ci("absolute_error", predictions, references, seed=4)
    b = bootstrap_ci("absolute_error", worse, references, seed=4)
    unpaired_width = (a.high - a.low) + (b.high - b.low)
    assert paired.difference.high - paired.difference.low < unpaired_width


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError):
        bootstrap_ci("mae", [], [])
    with pytest.raises(ValueError):
        bootstrap_ci("mae", [1.0], [1.0], confidence=1.5)
    with pytest.raises(ValueError):
        paired_bootstrap("mae", [1.0, 2.0], [1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        bootstrap_ci("mae", [1.0, 2.0], [1.0])
