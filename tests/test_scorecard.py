"""The Costly Dilemma scorecard arithmetic (workbench.cost.scorecard)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.cost.scorecard import (
    evaluation_budget,
    nondominated,
    rank_correlations,
    skill,
    weighted_ranking,
)
from workbench.metric_aware.metrics import rmse


def test_skill_against_the_constant_prior():
    gold = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    prior = rmse(np.full(5, gold.mean()), gold)
    assert skill(prior, prior) == 0 and skill(0.0, prior) == 1 and skill(2 * prior, prior) == -1


def test_evaluation_budget_gives_the_wanted_interval_width():
    rng = np.random.default_rng(0)
    errors = rng.normal(0, 1.0, 4000)
    budget = evaluation_budget(errors**2, half_width=0.05)
    # Simulate: at that many items the RMSE's 95% interval (spread over repeated draws) is about +-0.05.
    draws = np.array([rmse(rng.normal(0, 1.0, budget.items), 0) for _ in range(2000)])
    assert 1.96 * draws.std() == pytest.approx(0.05, rel=0.1)
    assert evaluation_budget(errors**2, half_width=0.1).items == pytest.approx(budget.items / 4, rel=0.02)
    labels, compute = budget.usd(label_usd_per_item=0.3, seconds_per_item=0.5, usd_per_hour=3.6)
    assert labels == pytest.approx(0.3 * budget.items) and compute == pytest.approx(budget.items * 0.5 / 1000)


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


def test_rank_correlations_with_bootstrap_intervals():
    rng = np.random.default_rng(1)
    axes = pd.DataFrame(
        {
            "generalization": np.arange(8.0),
            "evaluation_usd": np.arange(8.0) * 2 + 1,
            "serving_usd_per_1000": rng.permutation(8).astype(float),
        }
    )
    replicates = [axes + rng.normal(0, 0.3, axes.shape) for _ in range(200)]
    table = rank_correlations(axes, replicates).set_index(["axis_a", "axis_b"])
    tied = table.loc[("generalization", "evaluation_usd")]
    assert tied.rho == 1 and tied.verdict == "correlated" and tied.low > 0.8 and tied.p == pytest.approx(2 / 40320)
    free = table.loc[("generalization", "serving_usd_per_1000")]
    assert free.rho == pytest.approx(stats.spearmanr(axes.generalization, axes.serving_usd_per_1000).statistic)
    assert free.low <= free.rho <= free.high and free.replicates == 200 and free.stages == 8
    # Three stages can never show a correlation, however perfect their ranking.
    three = rank_correlations(axes.iloc[:3], [r.iloc[:3] for r in replicates]).set_index(["axis_a", "axis_b"])
    assert three.loc[("generalization", "evaluation_usd")].rho == 1 and (three.verdict == "orthogonal-compatible").all()


def test_scorecard_arithmetic_by_hand():
    from workbench.cost.scorecard import StageScores, bootstrap_scorecards, scorecard

    gold = {"own": np.array([1.0, 3.0, 5.0, 3.0]), "ood": np.array([2.0, 4.0])}
    good = StageScores(
        "good", gold, {"own": np.array([1.0, 3.0, 5.0, 4.0]), "ood": np.array([3.0, 3.0])}, seconds_per_request=0.36
    )
    prior = StageScores("prior", gold, {"own": np.full(4, 3.0), "ood": np.full(2, 3.0)}, seconds_per_request=0.036)
    table = scorecard(
        [good, prior],
        ["own"],
        ["ood"],
        prior={"own": 3.0, "ood": 3.0},
        half_width=0.5,
        label_usd_per_item=0.3,
        usd_per_hour=3.6,
        utilisation=0.5,
    )
    prior_rmse = np.sqrt(8 / 4)
    assert table.loc["good", "rmse:own"] == pytest.approx(0.5) and table.loc["prior", "rmse:own"] == pytest.approx(
        prior_rmse
    )
    assert table.loc["good", "skill:own"] == pytest.approx(1 - 0.5 / prior_rmse) and table.loc["prior", "quality"] == 0
    assert table.loc["good", "generalization"] == 0 and table.loc["good", "drop"] == pytest.approx(
        table.loc["good", "quality"]
    )
    items = evaluation_budget(np.array([0.0, 0.0, 0.0, 1.0]), 0.5).items
    assert table.loc["good", "evaluation_items"] == items
    assert table.loc["good", "evaluation_usd"] == pytest.approx(items * 0.3 + items * 0.36 * 3.6 / 3600)
    assert table.loc["good", "serving_usd_per_1000"] == pytest.approx(1000 * 0.36 * 3.6 / 3600 / 0.5)
    replicates = bootstrap_scorecards(
        [good, prior],
        ["own"],
        ["ood"],
        n_resamples=20,
        seed=0,
        prior={"own": 3.0, "ood": 3.0},
        half_width=0.5,
        label_usd_per_item=0.3,
        usd_per_hour=3.6,
    )
    assert len(replicates) == 20 and all(list(r.index) == ["good", "prior"] for r in replicates)
    assert len({round(r.loc["good", "rmse:own"], 6) for r in replicates}) > 1  # items were resampled
    assert all(
        r.loc["good", "serving_usd_per_1000"] == replicates[0].loc["good", "serving_usd_per_1000"] for r in replicates
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
