"""Metric cards: every registered metric has a complete, consistent card, its Bayes rule is really
optimal, and the tables derived from the cards agree with them."""

import math
import random
import re

import numpy as np
import pytest

from workbench.cost.generalization import EXACT_RULES
from workbench.metric_aware import experiments, mbr
from workbench.metric_aware.decision import POINT_RULES, decide, expected_metric, from_grid, rule_for_metric
from workbench.metric_aware.metrics import DECISION_RULES, MetricCard, get_metric, list_metrics, register_metric

CLOSED_FORM_RULES = set(POINT_RULES) | {"quantile"}
WORDS = "the a cat dog sat on mat quickly runs over lazy fox , . !".split()


@pytest.mark.parametrize("name", list_metrics())
def test_every_metric_has_a_complete_card(name):
    card = get_metric(name)
    assert isinstance(card, MetricCard) and card.name == name
    assert card.higher_is_better in (True, False)
    assert card.bayes_rule in DECISION_RULES or (card.bayes_rule is None and card.rule_note)
    low, high = card.value_range
    assert low < high
    assert card.citation.strip()
    assert ">>> " in (card.fn.__doc__ or ""), f"{name}: the metric function needs a doctest"
    assert (card.pairwise is not None) == (card.data == "text") == (card.bayes_rule == "mbr")


def _card_options(**changes):
    options = dict(
        kind="item",
        data="numeric",
        higher_is_better=False,
        bayes_rule="mean",
        value_range=(0, math.inf),
        citation="a paper",
    )
    return {**options, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bayes_rule": "average"}, "bayes_rule must be one of"),
        ({"data": "text", "bayes_rule": "mean"}, "picks a number"),
        ({"data": "text", "bayes_rule": "mbr"}, "pairwise form"),
        ({"pairwise": np.outer}, "pairwise forms are for text"),
        ({"bayes_rule": None}, "rule_note"),
        ({"value_range": (1, 0)}, "value_range"),
        ({"citation": " "}, "citation"),
        ({"kind": "set"}, "kind must be"),
    ],
)
def test_registry_refuses_contradictory_cards(changes, message):
    with pytest.raises(ValueError, match=f"'refused_metric'.*{message}"):
        register_metric("refused_metric", **_card_options(**changes))(len)
    assert "refused_metric" not in list_metrics()


def _random_distributions(rng, items=40, support=7):
    """Skewed discrete distributions on a shared irregular grid (so mean, median and mode differ)."""
    grid = np.sort(rng.choice(np.arange(0.0, 20.0, 0.5), size=support, replace=False))
    return from_grid(grid, rng.dirichlet(np.full(support, 0.4), size=items))


def _rule_params(name):
    return [{"quantile": level} for level in (0.1, 0.5, 0.9)] if get_metric(name).bayes_rule == "quantile" else [{}]


@pytest.mark.parametrize(
    "name", [n for n in list_metrics(kind="item", data="numeric") if get_metric(n).bayes_rule in CLOSED_FORM_RULES]
)
def test_closed_form_rule_minimises_the_expected_item_loss(name):
    card = get_metric(name)
    rng = np.random.default_rng(0)
    for params in _rule_params(name):
        distribution = _random_distributions(rng)
        chosen = decide(distribution, name, **params).predictions
        # Every grid point and a fine line through the range: no candidate may beat the rule.
        candidates = np.union1d(np.linspace(-1, 21, 2201), distribution.values[0])
        at_rule = expected_metric(name, chosen[:, None], distribution, **params)[:, 0]
        everywhere = expected_metric(name, candidates, distribution, **params)
        best = everywhere.max(axis=1) if card.higher_is_better else everywhere.min(axis=1)
        if card.higher_is_better:
            assert np.all(at_rule >= best - 1e-12), (name, params)
        else:
            assert np.all(at_rule <= best + 1e-12), (name, params)


@pytest.mark.parametrize("name", [n for n in list_metrics(kind="corpus", data="numeric") if get_metric(n).bayes_rule])
def test_corpus_metric_rule_beats_the_other_rules_in_expectation(name):
    # The corpus value depends on all items' outcomes at once: estimate its expectation over joint
    # draws of the gold answers, the same draws for every rule.
    card = get_metric(name)
    rng = np.random.default_rng(1)
    distribution = _random_distributions(rng)
    grid, probs = distribution.values[0], distribution.weights
    draws = (rng.random((4000, len(probs), 1)) > probs.cumsum(axis=1)[None]).sum(axis=2)
    gold = grid[np.minimum(draws, len(grid) - 1)]  # (draws, items)
    expected = {
        rule: float(np.mean(card(np.broadcast_to(fn(distribution), gold.shape), gold)))
        for rule, fn in POINT_RULES.items()
    }
    winner = (max if card.higher_is_better else min)(expected, key=expected.get)
    assert winner == card.bayes_rule, expected


def _random_inputs(data, rng):
    n = 30
    if data == "numeric":
        return rng.integers(1, 6, n).astype(float), rng.integers(1, 6, n).astype(float)
    if data == "probs":
        return rng.dirichlet(np.ones(4), size=n), rng.integers(0, 4, n)
    texts = random.Random(0)
    sentence = lambda: " ".join(texts.choice(WORDS) for _ in range(texts.randint(0, 8)))  # noqa: E731
    return [sentence() for _ in range(n)], [sentence() for _ in range(n)]


@pytest.mark.parametrize("name", list_metrics())
def test_values_stay_in_the_stated_range(name):
    card = get_metric(name)
    rng = np.random.default_rng(2)
    for _ in range(5):
        predictions, references = _random_inputs(card.data, rng)
        values = np.asarray(card(predictions, references), dtype=float)
        values = values[np.isfinite(values)]
        low, high = card.value_range
        assert np.all((values >= low - 1e-9) & (values <= high + 1e-9)), (name, values)


def test_derived_tables_agree_with_the_cards():
    assert experiments.EXPECTED_WINNER == {m: get_metric(m).bayes_rule for m in experiments.PATTERN_METRICS}
    assert set(experiments.RULES) == set(experiments.EXPECTED_WINNER.values())
    assert EXACT_RULES == {f"exact {rule}": POINT_RULES[rule] for rule in experiments.EXPECTED_WINNER.values()}
    assert mbr.UTILITIES == {name: get_metric(name).pairwise for name in list_metrics(data="text")}
    for name in list_metrics(data="numeric"):
        card = get_metric(name)
        if card.bayes_rule is None:
            with pytest.raises(ValueError, match=re.escape(card.rule_note)):
                rule_for_metric(name)
        else:
            assert rule_for_metric(name) == card.bayes_rule
