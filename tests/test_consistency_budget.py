"""Planning a SimCT study's query budget (workbench.consistency.budget) and the labelled pair set
(workbench.consistency.pairset), on synthetic pair scores and synthetic responses."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from workbench.consistency.budget import plan_budget, stratified_head
from workbench.consistency.features import FeatureConfig, PairFeaturizer
from workbench.consistency.pairset import fit_threshold, pair_set, pair_set_auc, score_pair_set, threshold_table
from workbench.consistency.power import ScoreCube, t_test_power
from workbench.consistency.responses import synthetic_responses


def synthetic_cube(effect: float, n_queries: int = 60, k: int = 6, seed: int = 0) -> ScoreCube:
    """Pair scores whose per-query mean drop (within - across) is ``effect`` sds of the per-query noise."""
    rng = np.random.default_rng(seed)
    level = rng.normal(0.5, 0.1, (n_queries, 1, 1))  # queries differ in how alike their answers are
    within = level + rng.normal(0, 0.15, (n_queries, k, k))
    within = (within + np.swapaxes(within, 1, 2)) / 2
    idx = np.arange(k)
    within[:, idx, idx] = np.nan
    z = rng.normal(size=(n_queries, 1, 1))
    drop = 0.1 * (effect + (z - z.mean()) / z.std())  # per-query drops with mean/sd exactly ``effect``
    across = level - drop + rng.normal(0, 0.15, (n_queries, k, k))
    return ScoreCube(tuple(f"q{i}" for i in range(n_queries)), within, across, "A", "B")


GRID = [10, 20, 40, 80, 160, 320]


def test_budget_is_the_smallest_grid_count_that_powers_every_target():
    cubes = {"large": synthetic_cube(1.0, seed=1), "small": synthetic_cube(0.3, seed=2)}
    plan = plan_budget(cubes, GRID, power=0.8, n_runs=300, seed=0)
    targets = plan.targets.set_index("target")
    assert targets.effect_dz["large"] > targets.effect_dz["small"] > 0
    assert targets.n_simulated["large"] < targets.n_simulated["small"]
    assert plan.reached and plan.n_queries == targets.n_simulated.max()
    curve = plan.curves.set_index(["target", "n_queries"]).rate
    assert all(curve[(name, plan.n_queries)] >= 0.8 for name in cubes)
    smaller = max(n for n in GRID if n < plan.n_queries)
    assert curve[("small", smaller)] < 0.8  # one grid step less would not do
    assert (targets.power_at_budget >= 0.8).all()
    # The t-test formula and the simulation agree within a grid step.
    formula = targets.n_formula["small"]
    assert smaller < formula * 1.3 and formula < plan.n_queries * 1.3
    assert t_test_power(targets.effect_dz["small"], plan.n_queries) == pytest.approx(
        curve[("small", plan.n_queries)], abs=0.1
    )


def test_budget_floor_and_unreachable_targets():
    plan = plan_budget({"large": synthetic_cube(1.5, seed=3)}, GRID, min_queries=100, n_runs=100)
    assert plan.n_queries == 160 and plan.reached  # the floor, rounded up to the grid
    none = plan_budget({"nothing": synthetic_cube(0.0, seed=4)}, GRID[:3], n_runs=100)
    assert not none.reached and none.n_queries == GRID[2]
    with pytest.raises(ValueError, match="min_queries"):
        plan_budget({"large": synthetic_cube(1.5)}, [10, 20], min_queries=50, n_runs=10)


def test_stratified_head_keeps_the_mix_and_is_a_prefix():
    pool = pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in range(40)],
            "source": ["rate"] * 10 + ["math"] * 10 + ["para"] * 10 + ["explain"] * 10,
        }
    )
    head = stratified_head(pool, 20)
    assert head.source.value_counts().to_dict() == {"rate": 5, "math": 5, "para": 5, "explain": 5}
    assert stratified_head(pool, 13).query_id.tolist() == head.query_id.tolist()[:13]
    assert head[head.source == "math"].query_id.tolist() == [f"q{i}" for i in range(10, 15)]
    with pytest.raises(ValueError, match="0 < n"):
        stratified_head(pool, 41)


@pytest.fixture(scope="module")
def scored():
    table = synthetic_responses(n_queries=30, n_seeds=5, seed=2, stage_shifts={"A": 0.0, "B": 0.6, "C": 0.1})
    featurizer = PairFeaturizer(FeatureConfig(use_embeddings=False))
    blocks = []

    def rouge1(pairs):
        blocks.append(set(pairs.change))
        return featurizer.transform(pairs)["rouge1"].to_numpy()

    rng = np.random.default_rng(0)
    pairs = pair_set(table, "A", ["B", "C"])
    out = score_pair_set(pairs, {"rouge1": rouge1, "noise": lambda p: rng.random(len(p))})
    assert blocks == [{"B"}, {"C"}]  # one block per change
    return out


def test_pair_set_blocks_hold_the_reference_within_pairs_and_the_cross_pairs(scored):
    for change, block in scored.groupby("change"):
        within, across = block[block.same_stage == 1], block[block.same_stage == 0]
        assert set(within.stage1) == set(within.stage2) == {"A"} and len(within) == 30 * 10
        assert set(across.stage2) == {change} and len(across) == 30 * 25


def test_pair_set_auc_with_query_bootstrap_intervals(scored):
    table = pair_set_auc(scored, ["rouge1", "noise"], reference_score="noise", by="change", n_resamples=200, seed=1)
    rows = table.set_index(["group", "score"])
    assert rows.loc[("all", "rouge1"), "auc"] == pytest.approx(roc_auc_score(scored.same_stage, scored.rouge1))
    assert (rows.auc_low <= rows.auc).all() and (rows.auc <= rows.auc_high).all()
    assert rows.loc[("B", "rouge1"), "auc"] > rows.loc[("C", "rouge1"), "auc"]  # the larger shift separates better
    assert rows.loc[("B", "rouge1"), "diff_low"] > 0  # better than noise, paired over the same resamples
    assert (
        rows.loc[("all", "noise"), "diff"] == 0
        and rows.loc[("all", "noise"), "auc_low"] < 0.5 < rows.loc[("all", "noise"), "auc_high"]
    )


def test_threshold_baseline(scored):
    labels = scored.same_stage.to_numpy()
    assert fit_threshold(np.r_[np.ones(5), np.zeros(5)], np.r_[np.ones(5), np.zeros(5)].astype(int)) == 1.0
    threshold = fit_threshold(scored.rouge1.to_numpy(), labels)
    table = threshold_table(scored, {"rouge1": threshold, "noise": 0.5}, n_resamples=100).set_index("score")
    assert table.balanced_accuracy["rouge1"] > table.balanced_accuracy["noise"]
    assert table.low["rouge1"] <= table.balanced_accuracy["rouge1"] <= table.high["rouge1"]
    # The fitted threshold is the best one on its own data.
    best = max(
        0.5 * ((scored.rouge1 >= t)[labels == 1].mean() + (scored.rouge1 < t)[labels == 0].mean())
        for t in np.unique(scored.rouge1)
    )
    assert table.balanced_accuracy["rouge1"] == pytest.approx(best)


def test_budget_and_pair_set_plots_draw(scored):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from workbench.consistency.plots import plot_budget, plot_pair_set_auc

    plan = plan_budget({"large": synthetic_cube(1.0, seed=1)}, [10, 20, 40], n_runs=50)
    ax = plot_budget(Figure().subplots(), plan.curves, plan.n_queries)
    assert "budget" in ax.get_title() and len(ax.get_lines()) == 4  # the curve, alpha, the power target, the budget
    aucs = pair_set_auc(scored, ["rouge1", "noise"], by="change", n_resamples=20)
    ax = plot_pair_set_auc(Figure().subplots(), aucs)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["all", "B", "C"] and len(ax.patches) == 6


def test_the_score_that_sees_the_targets_with_the_fewest_queries_is_chosen():
    from workbench.consistency.budget import plan_score_and_budget

    weak, strong = synthetic_cube(0.3, seed=5), synthetic_cube(1.0, seed=6)
    cubes = {"classifier": {"t": weak}, "cosine": {"t": strong}, "rouge": {"t": synthetic_cube(1.0, seed=6)}}
    chosen, plans = plan_score_and_budget(cubes, GRID, n_runs=200)
    assert (
        chosen == "cosine" and plans["cosine"].n_queries < plans["classifier"].n_queries
    )  # the tie with "rouge" goes to the earlier
    none = {"a": {"t": synthetic_cube(0.0, seed=7)}, "b": {"t": synthetic_cube(0.4, seed=8)}}
    chosen, plans = plan_score_and_budget(none, [10, 20], n_runs=200)
    assert chosen == "b" and not plans["b"].reached  # nobody reaches 0.8: the best worst-target power wins
