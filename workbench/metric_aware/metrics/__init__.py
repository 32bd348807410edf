"""A small registry of evaluation metrics: one signature and one card per metric.

Every metric takes ``predictions`` and ``references`` first, then keyword parameters, and is
registered with its :class:`~workbench.metric_aware.metrics.card.MetricCard`: kind, data, direction,
Bayes-optimal decision rule, range, citation and, for text metrics, the pairwise (MBR utility) form.
Tables of metric facts elsewhere are derived from the cards.

Two kinds:

* ``"item"`` metrics return one value per item (a numpy array with the broadcast shape of their
  inputs);
* ``"corpus"`` metrics return one float for the whole set; those registered with ``batched=True``
  reduce over the last axis only.

Three kinds of data, one module each: ``"numeric"`` point answers (:mod:`.numeric`), ``"text"``
(:mod:`.text`) and ``"probs"``, (n, C) class probabilities scored against (n,) class indices
(:mod:`.classes`). To add a metric, register it in the module of its data with a complete card
and a doctest; the registry refuses cards whose facts contradict each other.

>>> list_metrics(kind="corpus", data="numeric")
['mae', 'pearson', 'quadratic_weighted_kappa', 'rmse', 'spearman']
>>> list_metrics(data="probs")
['auc_ovr', 'ece', 'macro_f1', 'nll', 'precision', 'recall']
>>> card = get_metric("squared_error")
>>> card.kind, card.higher_is_better, card.data, card.bayes_rule
('item', False, 'numeric', 'mean')
>>> card([1.0, 2.0], [2.0, 2.0])
array([1., 0.])
"""

from workbench.metric_aware.metrics.card import (
    DECISION_RULES,
    MetricCard,
    MetricData,
    MetricKind,
    get_metric,
    list_metrics,
    register_metric,
)
from workbench.metric_aware.metrics.classes import (
    auc_ovr,
    ece,
    expected_calibration_error,
    macro_f1,
    macro_precision,
    macro_recall,
    nll,
)
from workbench.metric_aware.metrics.numeric import (
    absolute_error,
    accuracy,
    exact_match,
    mae,
    pearson,
    pinball,
    quadratic_weighted_kappa,
    rmse,
    spearman,
    squared_error,
    within_tolerance,
)
from workbench.metric_aware.metrics.text import bleu, chrf, minilm_cosine, rouge_l, token_f1

__all__ = [
    "DECISION_RULES",
    "MetricCard",
    "MetricData",
    "MetricKind",
    "absolute_error",
    "accuracy",
    "auc_ovr",
    "bleu",
    "chrf",
    "ece",
    "exact_match",
    "expected_calibration_error",
    "get_metric",
    "list_metrics",
    "macro_f1",
    "macro_precision",
    "macro_recall",
    "mae",
    "minilm_cosine",
    "nll",
    "pearson",
    "pinball",
    "quadratic_weighted_kappa",
    "register_metric",
    "rmse",
    "rouge_l",
    "spearman",
    "squared_error",
    "token_f1",
    "within_tolerance",
]
