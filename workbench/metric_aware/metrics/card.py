"""Metric cards and their registry: the one place where the facts about a metric are written.

A card holds what every other part of the workbench needs to know about a metric: how to compute
it, whether it scores single items or a whole set, what it scores (point answers, texts, class
probabilities), which direction is better, its range, where it comes from, and the Bayes-optimal
decision rule for it: the answer to give when the model's predictive distribution is known and
this metric will be used to evaluate. Tables elsewhere (the rule of :func:`decision.decide
<workbench.metric_aware.decision.decide>`, the expected winners of the pattern check, the MBR
utilities) are read off the cards, never written out again.

Decision rules (:data:`DECISION_RULES`):

* ``"mean"``, ``"median"``, ``"mode"``, ``"quantile"``: closed-form point answers
  (:mod:`workbench.metric_aware.decision`);
* ``"grid_search"``: a numeric metric without a closed form: the candidate with the best expected
  metric (:func:`workbench.metric_aware.decision.grid_search`);
* ``"mbr"``: a text metric: minimum Bayes risk selection among samples with the card's
  ``pairwise`` form as utility (:mod:`workbench.metric_aware.mbr`);
* None: no per-item rule (the metric couples items, or scores probabilities directly); the card's
  ``rule_note`` says why.

>>> card = get_metric("absolute_error")
>>> card.bayes_rule, card.higher_is_better, card.value_range
('median', False, (0.0, inf))
>>> get_metric("chrf").pairwise(["abc", "xyz"])
array([[100.,   0.],
       [  0., 100.]])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

MetricKind = Literal["item", "corpus"]
MetricData = Literal["numeric", "text", "probs"]

DECISION_RULES: dict[str, str] = {
    "mean": "the expected value",
    "median": "the median",
    "mode": "the most probable answer",
    "quantile": "a quantile at the metric's level",
    "grid_search": "the candidate with the best expected metric (no closed form)",
    "mbr": "minimum Bayes risk selection among samples, with the metric's pairwise form as utility",
}
"""Decision rule name -> what it picks. The closed-form point rules live in decision.py."""

_NUMERIC_RULES = ("mean", "median", "mode", "quantile", "grid_search")  # rules that pick a number


@dataclass(frozen=True)
class MetricCard:
    """A registered metric: the function and every fact about it.

    Attributes:
        name: Registry name.
        fn: The metric function ``fn(predictions, references, **params)``; its docstring carries
            a doctest.
        kind: ``"item"`` (one value per item) or ``"corpus"`` (one value per set).
        data: What it scores: ``"numeric"`` point answers, ``"text"``, or ``"probs"``, (n, C) class
            probabilities against (n,) class indices.
        higher_is_better: The direction: True for utilities (accuracy, chrF), False for losses.
        bayes_rule: The Bayes-optimal decision rule (a key of :data:`DECISION_RULES`), or None
            when there is no per-item rule.
        value_range: (lowest, highest) value the metric can take (``math.inf`` when unbounded).
        citation: Where the metric (and, where it matters, its rule) is defined.
        rule_note: Why the rule is what it is, where that is not obvious (required when
            ``bayes_rule`` is None).
        pairwise: For text metrics, ``pairwise(hypotheses, references=None) -> (H, R)`` matrix of
            the metric of every hypothesis against every reference: the MBR utility.
        batched: For corpus metrics, whether ``fn`` reduces only the last axis, so that (R, n)
            inputs give R values in one call.
    """

    name: str
    fn: Callable[..., np.ndarray | float]
    kind: MetricKind
    data: MetricData
    higher_is_better: bool
    bayes_rule: str | None
    value_range: tuple[float, float]
    citation: str
    rule_note: str = ""
    pairwise: Callable[..., np.ndarray] | None = None
    batched: bool = False

    def __call__(self, predictions, references, **params):
        return self.fn(predictions, references, **params)


_REGISTRY: dict[str, MetricCard] = {}


def _check_card(card: MetricCard) -> None:
    """Refuse a card whose facts contradict each other, naming the metric and the field."""
    problem = None
    if card.kind not in ("item", "corpus"):
        problem = f"kind must be 'item' or 'corpus', got {card.kind!r}"
    elif card.data not in ("numeric", "text", "probs"):
        problem = f"data must be 'numeric', 'text' or 'probs', got {card.data!r}"
    elif card.bayes_rule is not None and card.bayes_rule not in DECISION_RULES:
        problem = f"bayes_rule must be one of {sorted(DECISION_RULES)} or None, got {card.bayes_rule!r}"
    elif card.bayes_rule in _NUMERIC_RULES and card.data != "numeric":
        problem = f"bayes_rule {card.bayes_rule!r} picks a number, but the metric scores {card.data!r} data"
    elif card.data == "text" and (card.bayes_rule != "mbr" or card.pairwise is None):
        problem = "a text metric needs bayes_rule='mbr' and a pairwise form (its MBR utility)"
    elif card.data != "text" and card.pairwise is not None:
        problem = "pairwise forms are for text metrics (MBR utilities)"
    elif card.bayes_rule is None and not card.rule_note:
        problem = "a metric without a Bayes-optimal rule needs a rule_note saying why"
    elif not (len(card.value_range) == 2 and card.value_range[0] < card.value_range[1]):
        problem = f"value_range must be (low, high) with low < high, got {card.value_range!r}"
    elif not card.citation.strip():
        problem = "citation must not be empty"
    if problem:
        raise ValueError(f"metric card {card.name!r}: {problem}")


def register_metric(
    name: str,
    *,
    kind: MetricKind,
    data: MetricData,
    higher_is_better: bool,
    bayes_rule: str | None,
    value_range: tuple[float, float],
    citation: str,
    rule_note: str = "",
    pairwise: Callable[..., np.ndarray] | None = None,
    batched: bool = False,
) -> Callable[[Callable], Callable]:
    """Decorator that registers a metric function with its card under ``name``; returns it unchanged.

    The keyword arguments are the card's fields (see :class:`MetricCard`).

    Raises:
        ValueError: If ``name`` is already taken (silently replacing a metric would change
            results without anyone noticing), or the card's facts contradict each other.
    """

    def decorate(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"metric {name!r} is already registered")
        low, high = value_range
        card = MetricCard(
            name,
            fn,
            kind,
            data,
            higher_is_better,
            bayes_rule,
            (float(low), float(high)),
            citation,
            rule_note,
            pairwise,
            batched,
        )
        _check_card(card)
        _REGISTRY[name] = card
        return fn

    return decorate


def get_metric(name: str | MetricCard) -> MetricCard:
    """The card of the registered metric called ``name`` (a card is passed through unchanged).

    Raises:
        KeyError: If no metric has that name; the message lists the registered ones.
    """
    if isinstance(name, MetricCard):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered: {list_metrics()}") from None


def list_metrics(kind: MetricKind | None = None, data: MetricData | None = None) -> list[str]:
    """Sorted names of registered metrics, optionally filtered by kind and data type."""
    return sorted(
        name
        for name, card in _REGISTRY.items()
        if (kind is None or card.kind == kind) and (data is None or card.data == data)
    )
