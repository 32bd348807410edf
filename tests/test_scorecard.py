"""The Costly Dilemma scorecard arithmetic (workbench.cost.scorecard)."""

import numpy as np
import pandas as pd
import pytest

from workbench.cost.item_budget import items_for_half_width
from workbench.cost.scorecard import (
    nondominated,
    skill,
    weighted_ranking,
)
from workbench.metric_aware.metrics import rmse


def test_skill_against_the_constant_prior():
    gold = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    prior = rmse(np.full(5, gold.mean()), gold)
    assert skill(prior, prior) == 0 and skill(0.0, prior) == 1 and skill(2 * prior, prior) == -1


def test_nondominated_and_weighted_ranking():
    table = pd.DataFrame(
        {
            "generalization": [0.3, 0.2, 0.3, 0.1],
            "evaluation_usd": [100, 50, 120, 200],
            "serving_usd_per_1000": [1.0, 1.0, 0.5, 2.0],
        },
        index=list("abcd"),
    )
    assert nondominated(table).tolist() == [True, True, True, False]  # d is worse than a on every axis
    scores = weighted_ranking(table, {"generalization": 1, "evaluation_usd": 0, "serving_usd_per_1000": 0})
    assert scores.idxmax() in {"a", "c"} and scores["d"] == 0
    assert weighted_ranking(table, {"serving_usd_per_1000": 1}).idxmax() == "c"
    assert weighted_ranking(table, {"evaluation_usd": 2}).idxmax() == "b"
    with pytest.raises(ValueError, match="weights"):
        weighted_ranking(table, {"generalization": 0})


def test_scorecard_arithmetic_by_hand():
    from workbench.cost.scorecard import StageScores, scorecard

    gold = {"own": np.array([1.0, 3.0, 5.0, 3.0]), "ood": np.array([2.0, 4.0])}
    good = StageScores(
        "good",
        gold,
        {"own": np.array([1.0, 3.0, 5.0, 4.0]), "ood": np.array([3.0, 3.0])},
        seconds_per_request=0.36,
        request_seconds={"own": np.array([0.3, 0.36, 0.5])},
        tokens_per_item={"own": 10.0},
    )
    prior = StageScores("prior", gold, {"own": np.full(4, 3.0), "ood": np.full(2, 3.0)}, seconds_per_request=0.036)
    options = dict(prior={"own": 3.0, "ood": 3.0}, half_width=0.5, label_usd_per_item=0.3, usd_per_hour=3.6)
    table = scorecard([good, prior], ["own"], ["ood"], utilisation=0.5, **options)
    prior_rmse = np.sqrt(8 / 4)
    assert table.loc["good", "rmse:own"] == pytest.approx(0.5) and table.loc["prior", "rmse:own"] == pytest.approx(
        prior_rmse
    )
    assert table.loc["good", "skill:own"] == pytest.approx(1 - 0.5 / prior_rmse) and table.loc["prior", "quality"] == 0
    assert table.loc["good", "generalization"] == 0 and table.loc["good", "drop"] == pytest.approx(
        table.loc["good", "quality"]
    )
    # The evaluation's items come from subsampling (same seed, same subsets), priced at the median timed request.
    items = items_for_half_width(np.vstack([good.predictions["own"], prior.predictions["own"]]), gold["own"], 0.5)
    assert table.evaluation_items.tolist() == items.tolist()
    assert table.loc["good", "evaluation_usd"] == pytest.approx(items[0] * 0.3 + items[0] * 0.36 * 3.6 / 3600)
    assert table.loc["good", "evaluation_tokens"] == pytest.approx(10 * items[0])
    assert table.loc["good", "serving_usd_per_1000"] == pytest.approx(1000 * 0.36 * 3.6 / 3600 / 0.5)
    # A resample of items and timings changes the axes it should, and only those.
    again = scorecard(
        [good, prior],
        ["own"],
        ["ood"],
        rows={"own": np.array([0, 0, 3, 3]), "ood": np.array([1, 1])},
        seconds={"good": 0.72, "prior": 0.036},
        **options,
    )
    assert again.loc["good", "rmse:own"] == pytest.approx(np.sqrt(0.5))
    assert again.loc["good", "serving_usd_per_1000"] == pytest.approx(
        2 * table.loc["good", "serving_usd_per_1000"] * 0.5
    )


def test_scorecard_plot_marks_the_front_and_the_choice():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from workbench.cost.plots import plot_scorecard

    card = pd.DataFrame(
        {
            "generalization": [0.3, 0.2, 0.1],
            "evaluation_usd": [100.0, 50.0, 200.0],
            "serving_usd_per_1000": [1.0, 1.0, 2.0],
        },
        index=["a", "b", "c"],
    )
    card["pareto"] = nondominated(card)
    ax = plot_scorecard(Figure().subplots(), card, weighted_ranking(card, {"generalization": 1}))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["Pareto-optimal", "best weighted: a"] and len(ax.texts) == 3
