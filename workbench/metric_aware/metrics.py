"""A small registry of evaluation metrics with one clear signature per metric.

Every metric takes ``predictions`` and ``references`` first, then keyword parameters. Two kinds:

* ``"item"`` metrics return one value per item (a numpy array with the broadcast shape of their
  inputs). Numeric item metrics are plain numpy ufunc expressions, so they broadcast: the decision
  module evaluates them on a (items, candidates, outcomes) cube in one call.
* ``"corpus"`` metrics return one float for the whole set. Those registered with ``batched=True``
  reduce over the last axis only, so ``(R, n)`` inputs give ``R`` values at once (the bootstrap
  uses this to score all resamples in one call).

Three kinds of data: ``"numeric"`` predictions (point answers), ``"text"`` predictions, and
``"probs"``: (n, C) class probabilities scored against (n,) class indices (classification and
calibration metrics: macro F1, AUC, ECE, NLL ...).

Text metrics keep their library's scale: BLEU and chrF in [0, 100] as sacrebleu reports them,
ROUGE-L and token F1 in [0, 1].

>>> list_metrics(kind="corpus", data="numeric")
['mae', 'pearson', 'quadratic_weighted_kappa', 'rmse', 'spearman']
>>> list_metrics(data="probs")
['auc_ovr', 'ece', 'macro_f1', 'nll', 'precision', 'recall']
>>> spec = get_metric("squared_error")
>>> spec.kind, spec.higher_is_better, spec.data
('item', False, 'numeric')
>>> spec([1.0, 2.0], [2.0, 2.0])
array([1., 0.])
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import sacrebleu
from scipy.stats import rankdata
from sklearn.metrics import cohen_kappa_score, f1_score, precision_score, recall_score, roc_auc_score

MetricKind = Literal["item", "corpus"]
MetricData = Literal["numeric", "text", "probs"]


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric and what callers need to know to use it generically.

    Attributes:
        name: Registry name.
        fn: The metric function ``fn(predictions, references, **params)``.
        kind: ``"item"`` (one value per item) or ``"corpus"`` (one value per set).
        higher_is_better: Whether larger values are better (utilities) or worse (losses).
        data: ``"numeric"``, ``"text"`` or ``"probs"`` (class probabilities) predictions.
        batched: For corpus metrics, whether ``fn`` reduces only the last axis.
    """

    name: str
    fn: Callable[..., np.ndarray | float]
    kind: MetricKind
    higher_is_better: bool
    data: MetricData
    batched: bool = False

    def __call__(self, predictions, references, **params):
        return self.fn(predictions, references, **params)


_REGISTRY: dict[str, MetricSpec] = {}


def register_metric(
    name: str,
    *,
    kind: MetricKind,
    higher_is_better: bool,
    data: MetricData,
    batched: bool = False,
) -> Callable[[Callable], Callable]:
    """Decorator that registers a metric function under ``name`` and returns it unchanged.

    Raises:
        ValueError: If ``name`` is already taken (silently replacing a metric would change
            results without anyone noticing).
    """

    def decorate(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"metric {name!r} is already registered")
        _REGISTRY[name] = MetricSpec(name, fn, kind, higher_is_better, data, batched)
        return fn

    return decorate


def get_metric(name: str | MetricSpec) -> MetricSpec:
    """The registered metric called ``name`` (a spec is passed through unchanged).

    Raises:
        KeyError: If no metric has that name; the message lists the registered ones.
    """
    if isinstance(name, MetricSpec):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered: {list_metrics()}") from None


def list_metrics(kind: MetricKind | None = None, data: MetricData | None = None) -> list[str]:
    """Sorted names of registered metrics, optionally filtered by kind and data type."""
    return sorted(
        name
        for name, spec in _REGISTRY.items()
        if (kind is None or spec.kind == kind) and (data is None or spec.data == data)
    )


def _as_float(values) -> np.ndarray:
    return np.asarray(values, dtype=float)


# --- numeric item metrics --------------------------------------------------------------------


@register_metric("squared_error", kind="item", higher_is_better=False, data="numeric")
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


@register_metric("absolute_error", kind="item", higher_is_better=False, data="numeric")
def absolute_error(predictions, references) -> np.ndarray:
    """Absolute error per item; shapes as in :func:`squared_error`.

    >>> absolute_error([1.0, 3.0], [2.0, 2.5])
    array([1. , 0.5])
    """
    return np.abs(_as_float(predictions) - _as_float(references))


@register_metric("exact_match", kind="item", higher_is_better=True, data="numeric")
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


@register_metric("accuracy", kind="item", higher_is_better=True, data="numeric")
def accuracy(predictions, references) -> np.ndarray:
    """1.0 where the predicted label equals the reference label, else 0.0.

    Labels are compared with ``==``, so class ids (the usual numeric coding) and string labels
    both work.

    >>> accuracy([0, 1, 2], [0, 2, 2])
    array([1., 0., 1.])
    """
    return (np.asarray(predictions) == np.asarray(references)).astype(float)


@register_metric("pinball", kind="item", higher_is_better=False, data="numeric")
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


@register_metric("within_tolerance", kind="item", higher_is_better=True, data="numeric")
def within_tolerance(predictions, references, *, tolerance: float = 0.5) -> np.ndarray:
    """1.0 where ``|prediction - reference| <= tolerance``, else 0.0.

    The default of 0.5 suits 1-5 and 0-5 rating scales (within half a point); pass a tolerance
    on the scale of your task.

    >>> within_tolerance([1.0, 3.0, 4.6], [1.5, 2.0, 4.0], tolerance=0.5)
    array([1., 0., 0.])
    """
    return (np.abs(_as_float(predictions) - _as_float(references)) <= tolerance).astype(float)


# --- text item metrics -----------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD answer normalisation: lowercase, drop punctuation and articles, squeeze spaces.

    >>> squad_normalize("The  Eiffel-Tower!")
    'eiffeltower'
    """
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def _token_f1_one(prediction: str, reference: str) -> float:
    pred_tokens = squad_normalize(prediction).split()
    ref_tokens = squad_normalize(reference).split()
    # SQuAD 2.0 convention: if either side is empty, F1 is 1 only when both are.
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


@register_metric("token_f1", kind="item", higher_is_better=True, data="text")
def token_f1(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """SQuAD-style bag-of-tokens F1 per item, in [0, 1].

    Args:
        predictions: n predicted strings.
        references: n reference strings.

    Returns:
        Array of shape (n,).

    >>> token_f1(["the cat sat", "", "a dog"], ["cat sat down", "", "bird"]).round(4)
    array([0.8, 1. , 0. ])
    """
    return np.array([_token_f1_one(p, r) for p, r in zip(predictions, references, strict=True)])


@lru_cache(maxsize=4)
def _rouge_l_scorer(use_stemmer: bool):
    # Imported lazily: rouge-score pulls in nltk and absl, which are slow to import.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)


@register_metric("rouge_l", kind="item", higher_is_better=True, data="text")
def rouge_l(
    predictions: Sequence[str], references: Sequence[str], *, use_stemmer: bool = False
) -> np.ndarray:
    """ROUGE-L F-measure per item from the ``rouge-score`` package, in [0, 1].

    Args:
        predictions: n predicted strings.
        references: n reference strings.
        use_stemmer: Apply the Porter stemmer to tokens longer than three characters.

    Returns:
        Array of shape (n,).

    >>> rouge_l(["the cat sat on the mat"], ["the cat is on the mat"]).round(4)
    array([0.8333])
    """
    scorer = _rouge_l_scorer(use_stemmer)
    return np.array(
        [
            scorer.score(r, p)["rougeL"].fmeasure
            for p, r in zip(predictions, references, strict=True)
        ]
    )


@register_metric("bleu", kind="item", higher_is_better=True, data="text")
def bleu(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Sentence BLEU per item (sacrebleu defaults: 13a tokens, exp smoothing), in [0, 100].

    >>> bleu(["the cat sat on the mat"], ["the cat sat on the mat"])
    array([100.])
    """
    return np.array(
        [
            sacrebleu.sentence_bleu(p, [r]).score
            for p, r in zip(predictions, references, strict=True)
        ]
    )


@register_metric("chrf", kind="item", higher_is_better=True, data="text")
def chrf(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Sentence chrF per item (sacrebleu defaults: char order 6, beta 2), in [0, 100].

    >>> chrf(["abc"], ["abc"]), chrf(["abc"], ["xyz"])
    (array([100.]), array([0.]))
    """
    return np.array(
        [
            sacrebleu.sentence_chrf(p, [r]).score
            for p, r in zip(predictions, references, strict=True)
        ]
    )


# --- corpus metrics --------------------------------------------------------------------------
# The batched ones reduce over the last axis so that (R, n) resamples score in one call.


@register_metric("rmse", kind="corpus", higher_is_better=False, data="numeric", batched=True)
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


@register_metric("mae", kind="corpus", higher_is_better=False, data="numeric", batched=True)
def mae(predictions, references) -> float | np.ndarray:
    """Mean absolute error over the last axis; shapes as in :func:`rmse`.

    >>> float(mae([1.0, 3.0], [2.0, 2.5]))
    0.75
    """
    return np.mean(absolute_error(predictions, references), axis=-1)


@register_metric("pearson", kind="corpus", higher_is_better=True, data="numeric", batched=True)
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


@register_metric("spearman", kind="corpus", higher_is_better=True, data="numeric", batched=True)
def spearman(predictions, references) -> float | np.ndarray:
    """Spearman rank correlation (average ranks for ties) over the last axis.

    Shapes as in :func:`rmse`.

    >>> float(spearman([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]))
    1.0
    """
    return pearson(rankdata(predictions, axis=-1), rankdata(references, axis=-1))


@register_metric(
    "quadratic_weighted_kappa", kind="corpus", higher_is_better=True, data="numeric"
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
    return float(
        cohen_kappa_score(references.astype(int), predictions.astype(int), weights="quadratic")
    )


# --- class-probability metrics ---------------------------------------------------------------
# predictions: (n, C) class probabilities; references: (n,) class indices in 0..C-1. Label
# metrics use the most probable class; macro averages run over the classes present in the labels
# or the predictions (sklearn's default), with 0 for an undefined precision.


def _class_inputs(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    probs = _as_float(predictions)
    labels = np.asarray(references).astype(int)
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"class metrics need (n, C) probabilities and (n,) labels, got {probs.shape} and {labels.shape}")
    return probs, labels


@register_metric("macro_f1", kind="corpus", higher_is_better=True, data="probs")
def macro_f1(predictions, references) -> float:
    """Macro-averaged F1 of the most probable class.

    >>> macro_f1([[.8, .2], [.3, .7], [.6, .4]], [0, 1, 1])
    0.6666666666666666
    """
    probs, labels = _class_inputs(predictions, references)
    return float(f1_score(labels, probs.argmax(axis=1), average="macro", zero_division=0))


@register_metric("precision", kind="corpus", higher_is_better=True, data="probs")
def macro_precision(predictions, references) -> float:
    """Macro-averaged precision of the most probable class.

    >>> macro_precision([[.8, .2], [.3, .7], [.6, .4]], [0, 1, 1])
    0.75
    """
    probs, labels = _class_inputs(predictions, references)
    return float(precision_score(labels, probs.argmax(axis=1), average="macro", zero_division=0))


@register_metric("recall", kind="corpus", higher_is_better=True, data="probs")
def macro_recall(predictions, references) -> float:
    """Macro-averaged recall of the most probable class.

    >>> macro_recall([[.8, .2], [.3, .7], [.6, .4]], [0, 1, 1])
    0.75
    """
    probs, labels = _class_inputs(predictions, references)
    return float(recall_score(labels, probs.argmax(axis=1), average="macro", zero_division=0))


@register_metric("auc_ovr", kind="corpus", higher_is_better=True, data="probs")
def auc_ovr(predictions, references) -> float:
    """Macro one-vs-rest ROC AUC over the classes that occur with both outcomes in ``references``.

    sklearn's ``roc_auc_score(multi_class="ovr")`` refuses a sample that lacks a class; here such
    classes are skipped (NaN when none is left), so small slices still get a value.

    >>> auc_ovr([[.9, .1], [.6, .4], [.7, .3], [.2, .8]], [0, 0, 1, 1])
    0.75
    """
    probs, labels = _class_inputs(predictions, references)
    scores = [roc_auc_score(labels == c, probs[:, c]) for c in range(probs.shape[1]) if 0 < (labels == c).sum() < len(labels)]
    return float(np.mean(scores)) if scores else float("nan")


@register_metric("ece", kind="corpus", higher_is_better=False, data="probs")
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


@register_metric("nll", kind="corpus", higher_is_better=False, data="probs")
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
