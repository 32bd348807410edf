"""Metrics of class probabilities: (n, C) probabilities scored against (n,) class indices.

Label metrics use the most probable class; macro averages run over the classes present in the labels
or the predictions (sklearn's default), with 0 for an undefined precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import inf

import numpy as np
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from workbench.metric_aware.metrics.card import register_metric

_MACRO = "macro averages couple items through per-class counts; the usual answer is the most probable class"
_RANKING = "scores the ranking of items by their probabilities, not one answer per item"
_PROPER = "scores the probabilities themselves: a proper scoring rule is optimised by reporting the true distribution"


def _as_float(values) -> np.ndarray:
    return np.asarray(values, dtype=float)


def _class_inputs(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    probs = _as_float(predictions)
    labels = np.asarray(references).astype(int)
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"class metrics need (n, C) probabilities and (n,) labels, got {probs.shape} and {labels.shape}"
        )
    return probs, labels


@register_metric(
    "macro_f1",
    kind="corpus",
    data="probs",
    higher_is_better=True,
    bayes_rule=None,
    value_range=(0, 1),
    citation="van Rijsbergen, Information Retrieval (1979); macro average as in scikit-learn",
    rule_note=_MACRO,
)
def macro_f1(predictions, references) -> float:
    """Macro-averaged F1 of the most probable class.

    >>> macro_f1([[.8, .2], [.3, .7], [.6, .4]], [0, 1, 1])
    0.6666666666666666
    """
    probs, labels = _class_inputs(predictions, references)
    return float(f1_score(labels, probs.argmax(axis=1), average="macro", zero_division=0))


@register_metric(
    "precision",
    kind="corpus",
    data="probs",
    higher_is_better=True,
    bayes_rule=None,
    value_range=(0, 1),
    citation="van Rijsbergen, Information Retrieval (1979); macro average as in scikit-learn",
    rule_note=_MACRO,
)
def macro_precision(predictions, references) -> float:
    """Macro-averaged precision of the most probable class.

    >>> macro_precision([[.8, .2], [.3, .7], [.6, .4]], [0, 1, 1])
    0.75
    """
    probs, labels = _class_inputs(predictions, references)
    return float(precision_score(labels, probs.argmax(axis=1), average="macro", zero_division=0))


@register_metric(
    "recall",
    kind="corpus",
    data="probs",
    higher_is_better=True,
    bayes_rule=None,
    value_range=(0, 1),
    citation="van Rijsbergen, Information Retrieval (1979); macro average as in scikit-learn",
    rule_note=_MACRO,
)
def macro_recall(predictions, references) -> float:
    """Macro-averaged recall of the most probable class.

    >>> macro_recall([[.8, .2], [.3, .7], [.6, .4]], [0, 1, 1])
    0.75
    """
    probs, labels = _class_inputs(predictions, references)
    return float(recall_score(labels, probs.argmax(axis=1), average="macro", zero_division=0))


@register_metric(
    "auc_ovr",
    kind="corpus",
    data="probs",
    higher_is_better=True,
    bayes_rule=None,
    value_range=(0, 1),
    citation="Fawcett, An introduction to ROC analysis, Pattern Recognition Letters 27 (2006)",
    rule_note=_RANKING,
)
def auc_ovr(predictions, references) -> float:
    """Macro one-vs-rest ROC AUC over the classes that occur with both outcomes in ``references``.

    sklearn's ``roc_auc_score(multi_class="ovr")`` refuses a sample that lacks a class; here such
    classes are skipped (NaN when none is left), so small slices still get a value.

    >>> auc_ovr([[.9, .1], [.6, .4], [.7, .3], [.2, .8]], [0, 0, 1, 1])
    0.75
    """
    probs, labels = _class_inputs(predictions, references)
    scores = [
        roc_auc_score(labels == c, probs[:, c]) for c in range(probs.shape[1]) if 0 < (labels == c).sum() < len(labels)
    ]
    return float(np.mean(scores)) if scores else float("nan")


@register_metric(
    "ece",
    kind="corpus",
    data="probs",
    higher_is_better=False,
    bayes_rule=None,
    value_range=(0, 1),
    citation="Naeini et al., AAAI 2015; Guo et al., On Calibration of Modern Neural Networks, ICML 2017",
    rule_note=_PROPER,
)
def ece(predictions, references, *, n_bins: int = 10) -> float:
    """Expected calibration error of the most probable class, with ``n_bins`` equal-width bins.

    ECE = sum over bins b of (n_b / n) * |accuracy_b - mean confidence_b|. Bin i holds
    confidences in [i/n_bins, (i+1)/n_bins); the last bin also holds 1.0.

    Two bins: the confidences 0.9, 0.8, 0.7 and 0.6 all fall in the upper one, and 2 of the 4
    predictions are right: ECE = |0.5 - 0.75| = 0.25.

    >>> round(ece([[.9, .1], [.2, .8], [.7, .3], [.4, .6]], [0, 0, 1, 1], n_bins=2), 6)
    0.25
    """
    probs, labels = _class_inputs(predictions, references)
    return expected_calibration_error(probs.max(axis=1), probs.argmax(axis=1) == labels, n_bins)


@register_metric(
    "nll",
    kind="corpus",
    data="probs",
    higher_is_better=False,
    bayes_rule=None,
    value_range=(0, inf),
    citation="Good, Rational decisions, JRSS B 14 (1952); Gneiting & Raftery, JASA 102 (2007)",
    rule_note=_PROPER,
)
def nll(predictions, references, *, floor: float = 1e-12) -> float:
    """Mean negative log-likelihood of the reference class (nats); probabilities are floored at ``floor``.

    >>> round(nll([[.5, .5], [.25, .75]], [0, 1]), 4)
    0.4904
    """
    probs, labels = _class_inputs(predictions, references)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], floor))))


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> float:
    """ECE from the confidence of each prediction and whether it was right (see :func:`ece`).

    Two bins: [0, 0.5) holds 0.3 (wrong): gap 0.3, weight 1/4; [0.5, 1] holds 0.9, 0.8, 0.6 with
    2 of 3 right: gap |2/3 - 0.7667| = 0.1, weight 3/4. ECE = 0.075 + 0.075:

    >>> round(expected_calibration_error([0.9, 0.8, 0.3, 0.6], [1, 0, 0, 1], n_bins=2), 6)
    0.15
    """
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if confidence.shape != correct.shape or confidence.size == 0:
        raise ValueError("confidence and correct need the same, non-zero length")
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)
