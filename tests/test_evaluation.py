"""Metrics against hand-computed values and sklearn; perplexity against a brute-force loop."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from make_tiny_model import make_tiny_model
from workbench.inference.engine import HFEngine
from workbench.inference.models import load_model
from workbench.lifecycle.evaluation import (
    Predictions,
    class_scheme,
    classification_metrics,
    evaluate_stage,
    length_bucket,
    perplexity,
    plot_metric,
    slice_metrics,
    sliding_windows,
)
from workbench.metric_aware.metrics import expected_calibration_error
from workbench.tasks import Example, get_task


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return load_model(make_tiny_model(tmp_path_factory.mktemp("tiny"), "llama"), device="cpu")


def test_ece_by_hand():
    # 3 bins of width 1/3: {0.2} wrong -> gap 0.2; {0.5, 0.6} one right -> |0.5 - 0.55| = 0.05;
    # {0.7, 0.9, 1.0} all right -> |1 - 0.8667| = 0.1333. Weighted: (0.2 + 2 * 0.05 + 3 * 0.1333) / 6.
    ece = expected_calibration_error([0.2, 0.5, 0.6, 0.7, 0.9, 1.0], [0, 1, 0, 1, 1, 1], n_bins=3)
    assert ece == pytest.approx((0.2 + 2 * 0.05 + 3 * (1 - 2.6 / 3)) / 6)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == 0.0
    assert expected_calibration_error([0.95, 0.95], [0, 0], n_bins=10) == pytest.approx(0.95)
    with pytest.raises(ValueError):
        expected_calibration_error([], [])


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=200)
    labels = np.concatenate([np.arange(5), rng.integers(0, 5, size=195)])
    metrics = classification_metrics(labels, probs)
    predicted = probs.argmax(axis=1)
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert metrics["precision"] == pytest.approx(precision_score(labels, predicted, average="macro"))
    assert metrics["recall"] == pytest.approx(recall_score(labels, predicted, average="macro"))
    assert metrics["auc_ovr"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def test_classification_metrics_by_hand():
    # predictions 0, 1, 0, 2 against 0, 1, 1, 2: classes 0 (P 1/2, R 1), 1 (P 1, R 1/2), 2 (P 1, R 1).
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    metrics = classification_metrics([0, 1, 1, 2], probs)
    assert metrics["accuracy"] == 0.75
    assert metrics["precision"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert metrics["recall"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    # class 1 scores 0.7, 0.4 (positives) vs 0.3, 0.1 (negatives): AUC 1; classes 0 and 2 likewise 1.
    assert metrics["auc_ovr"] == 1.0
    # ten bins: confidences 0.6, 0.7, 0.5, 0.8 each alone, right, right, wrong, right.
    assert metrics["ece"] == pytest.approx((0.4 + 0.3 + 0.5 + 0.2) / 4)


def test_class_schemes():
    sst5, stsb = get_task("sst5"), get_task("stsb")
    assert class_scheme(sst5).of(sst5.grid).tolist() == [0, 1, 2, 3, 4]
    scheme = class_scheme(stsb)
    assert scheme.names == ["0-1", "1-2", "2-3", "3-4", "4-5"]
    assert scheme.of([0.0, 0.8, 1.0, 3.75, 5.0]).tolist() == [0, 0, 1, 3, 4]


def fake_predictions():
    task = get_task("sst5")
    texts = ["a b", "a b c", "w " * 15, "w " * 30]
    examples = [
        Example(str(i), text, target) for i, (text, target) in enumerate(zip(texts, [1.0, 2.0, 4.0, 5.0], strict=True))
    ]
    probs = np.array([[0.7, 0.3, 0, 0, 0], [0.2, 0.8, 0, 0, 0], [0, 0, 0.5, 0.5, 0], [0, 0, 0, 0.4, 0.6]])
    return Predictions(task, examples, probs, np.array([0.1, 0.2, 0.3, 0.4]), class_scheme(task))


def test_prediction_metrics_and_slices():
    predictions = fake_predictions()
    metrics = predictions.metrics()
    expected = np.array([1.3, 1.8, 3.5, 4.6])
    assert predictions.expected == pytest.approx(expected)
    assert metrics["rmse"] == pytest.approx(math.sqrt(np.mean((expected - [1, 2, 4, 5]) ** 2)))
    assert metrics["outside_mass"] == pytest.approx(0.25) and metrics["n"] == 4
    assert metrics["accuracy"] == 0.75  # the 3-vs-4 tie goes to 3 (first maximum), which is wrong
    table = slice_metrics(predictions, length_bucket, "length")
    assert table["slice"].tolist() == ["11-20 words", "<=10 words", ">20 words"]
    assert table["n"].tolist() == [1, 2, 1]
    assert table.loc[table["slice"] == "<=10 words", "accuracy"].item() == 1.0


def test_sliding_windows_score_every_token_once():
    for length, max_length, stride in [(10, 6, 3), (7, 7, 7), (20, 5, 5), (3, 8, 2), (33, 8, 3)]:
        windows = sliding_windows(length, max_length, stride)
        scored = [t for _, end, n in windows for t in range(end - n, end)]
        assert scored == list(range(1, length))
        assert all(end - begin <= max_length and end - n > begin for begin, end, n in windows)


def test_perplexity_matches_brute_force(tiny_lm):
    texts = ["A gripping film.", "The plot drags on and on, and nobody cares.", "Fine."]
    tokenizer, model = tiny_lm.tokenizer, tiny_lm.model
    stream = []
    for text in texts:
        stream += [tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    stream.append(tokenizer.eos_token_id)
    for max_length, stride in [(8, 3), (6, 6), (100, 50)]:
        nll = 0.0
        with torch.no_grad():
            for begin, end, n in sliding_windows(len(stream), max_length, stride):
                for t in range(end - n, end):  # each scored token, alone, with its window's context
                    logits = model(torch.tensor([stream[begin:t]])).logits[0, -1].float()
                    nll -= float(torch.log_softmax(logits, dim=-1)[stream[t]])
        result = perplexity(tiny_lm, texts, max_length=max_length, stride=stride, batch_size=2)
        assert result["tokens"] == len(stream) - 1
        assert result["nll"] == pytest.approx(nll / (len(stream) - 1), rel=1e-4)
        assert result["perplexity"] == pytest.approx(math.exp(nll / (len(stream) - 1)), rel=1e-4)


def test_evaluate_stage_tables(tiny_lm):
    sets = {name: (get_task(name), get_task(name).examples("test", limit=6, seed=0)) for name in ("sst5", "stsb")}
    evaluation = evaluate_stage(
        "tiny", HFEngine(tiny_lm, cache=None, progress=False), sets, ppl_length=32, ppl_stride=16
    )
    metrics = evaluation.metrics
    assert metrics["task"].tolist() == ["sst5", "stsb"] and (metrics["n"] == 6).all()
    assert metrics[["perplexity", "accuracy", "macro_f1", "ece", "rmse"]].notna().all().all()
    assert set(evaluation.slices["slicing"]) == {"length", "genre"}
    assert evaluation.slices.groupby("task")["n"].sum().tolist() == [6, 6]
    probs = evaluation.predictions["stsb"].class_probs
    assert probs.shape == (6, 5) and np.allclose(probs.sum(axis=1), 1)
    axes = plot_metric(Figure().add_subplot(), metrics, "accuracy")
    assert len(axes.patches) == 2
