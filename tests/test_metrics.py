from __future__ import annotations

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from scipy import stats
from sklearn.metrics import (
    cohen_kappa_score,
    mean_absolute_error,
    mean_pinball_loss,
    mean_squared_error,
)

from workbench.metric_aware import metrics
from workbench.metric_aware.metrics import get_metric, list_metrics, register_metric

EXPECTED_METADATA = {
    # name: (kind, higher_is_better, data)
    "squared_error": ("item", False, "numeric"),
    "absolute_error": ("item", False, "numeric"),
    "exact_match": ("item", True, "numeric"),
    "accuracy": ("item", True, "numeric"),
    "pinball": ("item", False, "numeric"),
    "within_tolerance": ("item", True, "numeric"),
    "token_f1": ("item", True, "text"),
    "rouge_l": ("item", True, "text"),
    "bleu": ("item", True, "text"),
    "chrf": ("item", True, "text"),
    "minilm_cosine": ("item", True, "text"),
    "spearman": ("corpus", True, "numeric"),
    "pearson": ("corpus", True, "numeric"),
    "rmse": ("corpus", False, "numeric"),
    "mae": ("corpus", False, "numeric"),
    "quadratic_weighted_kappa": ("corpus", True, "numeric"),
    "macro_f1": ("corpus", True, "probs"),
    "precision": ("corpus", True, "probs"),
    "recall": ("corpus", True, "probs"),
    "auc_ovr": ("corpus", True, "probs"),
    "ece": ("corpus", False, "probs"),
    "nll": ("corpus", False, "probs"),
}


@pytest.fixture
def numeric_pair():
    rng = np.random.default_rng(1)
    references = rng.normal(size=200)
    predictions = references + rng.normal(scale=0.7, size=200)
    return predictions, references


def test_registry_lists_every_metric_with_its_metadata():
    assert set(list_metrics()) == set(EXPECTED_METADATA)
    for name, (kind, higher_is_better, data) in EXPECTED_METADATA.items():
        spec = get_metric(name)
        assert (spec.kind, spec.higher_is_better, spec.data) == (kind, higher_is_better, data)
    assert list_metrics(kind="item", data="text") == ["bleu", "chrf", "minilm_cosine", "rouge_l", "token_f1"]


def test_registry_rejects_unknown_and_duplicate_names():
    with pytest.raises(KeyError, match="registered"):
        get_metric("no_such_metric")
    with pytest.raises(ValueError, match="already registered"):
        register_metric(
            "rmse",
            kind="corpus",
            data="numeric",
            higher_is_better=False,
            bayes_rule="mean",
            value_range=(0, 1),
            citation="x",
        )(len)
    spec = get_metric("rmse")
    assert get_metric(spec) is spec


def test_squared_and_absolute_error_match_sklearn(numeric_pair):
    predictions, references = numeric_pair
    assert np.mean(metrics.squared_error(predictions, references)) == pytest.approx(
        mean_squared_error(references, predictions)
    )
    assert np.mean(metrics.absolute_error(predictions, references)) == pytest.approx(
        mean_absolute_error(references, predictions)
    )


@pytest.mark.parametrize("quantile", [0.1, 0.5, 0.9])
def test_pinball_matches_sklearn(numeric_pair, quantile):
    predictions, references = numeric_pair
    ours = metrics.pinball(predictions, references, quantile=quantile)
    assert ours.shape == (200,)
    assert ours.mean() == pytest.approx(mean_pinball_loss(references, predictions, alpha=quantile))


def test_pinball_is_asymmetric_and_validates_quantile():
    # Under-predicting by 1 at q=0.9 costs 0.9; over-predicting by 1 costs 0.1.
    np.testing.assert_allclose(metrics.pinball([0.0, 2.0], [1.0, 1.0], quantile=0.9), [0.9, 0.1])
    np.testing.assert_allclose(
        metrics.pinball([0.0, 3.0], [1.0, 1.0]), 0.5 * metrics.absolute_error([0.0, 3.0], [1, 1])
    )
    with pytest.raises(ValueError):
        metrics.pinball([1.0], [1.0], quantile=1.0)


def test_exact_match_uses_tolerance_and_never_matches_nan():
    predictions = [0.1 + 0.2, 1.0, 1.05, np.nan]
    references = [0.3, 1.0, 1.0, np.nan]
    np.testing.assert_array_equal(metrics.exact_match(predictions, references), [1, 1, 0, 0])
    np.testing.assert_array_equal(metrics.exact_match(predictions, references, tolerance=0.1), [1, 1, 1, 0])
    np.testing.assert_array_equal(metrics.exact_match(predictions, references, tolerance=0.0), [0, 1, 0, 0])


def test_accuracy_and_within_tolerance():
    np.testing.assert_array_equal(metrics.accuracy(["pos", "neg"], ["pos", "pos"]), [1, 0])
    np.testing.assert_array_equal(metrics.accuracy([1, 2, 3], [1, 2, 4]), [1, 1, 0])
    # The boundary counts as within tolerance.
    np.testing.assert_array_equal(metrics.within_tolerance([2.0, 2.5, 3.51], [3.0, 3.0, 3.0], tolerance=0.5), [0, 1, 0])


def test_numeric_item_metrics_broadcast():
    # The decision module relies on (B, C, 1) x (B, 1, K) broadcasting.
    predictions = np.arange(6.0).reshape(2, 3, 1)
    references = np.arange(8.0).reshape(2, 1, 4)
    for name in list_metrics(kind="item", data="numeric"):
        assert get_metric(name)(predictions, references).shape == (2, 3, 4), name


def test_token_f1_known_values():
    predictions = ["The Denver Broncos!", "Broncos", "", "cats and dogs", "a the an"]
    references = ["Denver Broncos", "Denver Broncos", "", "dogs and cats and mice", ""]
    # Second: precision 1, recall 1/2 -> 2/3; fourth: overlap 3 of 3 and 5 -> 0.75;
    # last: normalises to nothing on both sides -> 1 by the SQuAD 2.0 convention.
    np.testing.assert_allclose(metrics.token_f1(predictions, references), [1.0, 2 / 3, 1.0, 0.75, 1.0])
    assert metrics.token_f1(["x"], [""])[0] == 0.0


TEXT_PAIRS = [
    ("the cat sat on the mat", "the cat is on the mat"),
    ("abc", "abcdef"),
    ("A quick brown fox jumps.", "the lazy dog sleeps"),
    ("", "non-empty reference"),
]


def test_text_metrics_score_hypothesis_against_reference():
    hypotheses, references = zip(*TEXT_PAIRS, strict=True)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    expected = {
        "chrf": [sacrebleu.sentence_chrf(h, [r]).score for h, r in TEXT_PAIRS],
        "bleu": [sacrebleu.sentence_bleu(h, [r]).score for h, r in TEXT_PAIRS],
        "rouge_l": [scorer.score(r, h)["rougeL"].fmeasure for h, r in TEXT_PAIRS],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(get_metric(name)(hypotheses, references), values)
    # chrF weighs recall more (beta = 2), so swapping the sides must change the score.
    assert metrics.chrf(["abc"], ["abcdef"])[0] < metrics.chrf(["abcdef"], ["abc"])[0]
    assert metrics.rouge_l(["the cat"], ["the cat"], use_stemmer=True)[0] == 1.0


def test_text_metrics_reject_mismatched_lengths():
    with pytest.raises(ValueError):
        metrics.chrf(["a", "b"], ["a"])


def test_corpus_metrics_match_references(numeric_pair):
    predictions, references = numeric_pair
    assert metrics.rmse(predictions, references) == pytest.approx(np.sqrt(mean_squared_error(references, predictions)))
    assert metrics.mae(predictions, references) == pytest.approx(mean_absolute_error(references, predictions))
    assert metrics.pearson(predictions, references) == pytest.approx(stats.pearsonr(predictions, references)[0])
    # Rounding creates ties, which Spearman must rank by their average rank.
    rounded = np.round(predictions)
    assert metrics.spearman(rounded, references) == pytest.approx(stats.spearmanr(rounded, references)[0])


def test_batched_corpus_metrics_reduce_only_the_last_axis(numeric_pair):
    predictions, references = numeric_pair
    stacked_predictions = np.stack([predictions, predictions[::-1], np.round(predictions)])
    stacked_references = np.stack([references] * 3)
    for name in ("rmse", "mae", "pearson", "spearman"):
        spec = get_metric(name)
        assert spec.batched
        batched = spec(stacked_predictions, stacked_references)
        singles = [spec(p, r) for p, r in zip(stacked_predictions, stacked_references, strict=True)]
        np.testing.assert_allclose(batched, singles, err_msg=name)


def test_pearson_is_nan_for_constant_input():
    assert np.isnan(metrics.pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_quadratic_weighted_kappa_matches_sklearn_and_rejects_floats():
    rng = np.random.default_rng(3)
    references = rng.integers(1, 6, size=100)
    predictions = np.clip(references + rng.integers(-1, 2, size=100), 1, 5)
    assert metrics.quadratic_weighted_kappa(predictions, references) == pytest.approx(
        cohen_kappa_score(references, predictions, weights="quadratic")
    )
    # Integer-valued floats are fine; fractional values must be rounded by the caller.
    assert metrics.quadratic_weighted_kappa([1.0, 2.0], [1, 2]) == 1.0
    with pytest.raises(ValueError, match="round"):
        metrics.quadratic_weighted_kappa([1.5, 2.0], [1, 2])


def test_nll_matches_sklearn_log_loss():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=100)
    labels = rng.integers(0, 4, size=100)
    assert get_metric("nll")(probs, labels) == pytest.approx(log_loss(labels, probs, labels=range(4)))


def test_class_metrics_refuse_point_predictions():
    with pytest.raises(ValueError, match="class metrics need"):
        get_metric("macro_f1")([1, 2, 3], [1, 2, 3])
