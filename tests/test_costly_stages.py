"""The Costly Dilemma on enough stages (issue 20): arms, evaluation cost by subsampling, grouped orthogonality tests,
quality-adjusted cost, generalization effects, and the profile sizes that make them testable."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.cost import item_budget, orthogonality, quality_adjusted, stage_grid, stage_scoring
from workbench.cost.scorecard import StageScores, scorecard
from workbench.profiles import load_profile

SECTION = "07_cost_generalization_evaluation"


# ------------------------------------------------------------------ evaluation cost by subsampling


def test_items_for_half_width_reach_the_half_width_on_fresh_draws():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=3000)
    answers = gold + rng.normal(0, 1.0, 3000)
    items = int(item_budget.items_for_half_width(answers[None, :], gold, half_width=0.05, repeats=400, seed=1)[0])
    # Fresh samples of that many items from the population: their RMSE spreads about +-0.05 (95%).
    draws = [np.sqrt(np.mean(rng.normal(0, 1.0, items) ** 2)) for _ in range(2000)]
    low, high = np.quantile(draws, [0.025, 0.975])
    assert (high - low) / 2 == pytest.approx(0.05, rel=0.2)
    # Past the ladder's end (8x the items) the count follows the 1/sqrt(n) law: a quarter of the width, 16x the items.
    far = item_budget.items_for_half_width(answers[None, :200], gold[:200], 0.01, repeats=400, seed=1)[0]
    farther = item_budget.items_for_half_width(answers[None, :200], gold[:200], 0.0025, repeats=400, seed=1)[0]
    assert far > 8 * 200 and farther == pytest.approx(16 * far, rel=0.01)


def test_items_to_tell_apart_follow_the_effect_size():
    rng = np.random.default_rng(2)
    loss_a = rng.normal(1.0, 1.0, 2000)
    assert item_budget.items_to_tell_apart(loss_a, loss_a, repeats=50) == np.inf  # the same answers: never apart
    # Mean difference 0.25 sd: a paired test at 5% with 80% power needs about (2.8 / 0.25)^2 = 125 items.
    items = item_budget.items_to_tell_apart(loss_a + 0.25, loss_a, seed=3)
    shifted = item_budget.items_to_tell_apart(loss_a + rng.normal(0.25, 1.0, 2000), loss_a, repeats=400, seed=3)
    assert items <= 16  # a constant shift has no spread: a handful of items tell it
    assert 80 <= shifted <= 200


def test_budget_table_prices_items_in_tokens_seconds_and_dollars():
    gold = {"own": np.arange(100.0) % 5}
    stage = StageScores(
        "s",
        gold,
        {"own": gold["own"] + np.tile([0.5, -0.5], 50)},
        seconds_per_request=1.0,
        request_seconds={"own": np.array([0.2, 0.4, 0.9])},
        tokens_per_item={"own": 30.0},
    )
    table = item_budget.budget_table([stage], ["own"], 0.1, label_usd_per_item=0.3, usd_per_hour=3.6, repeats=50)
    row = table.iloc[0]
    assert row["items"] >= 1 and row["tokens"] == 30 * row["items"]
    assert row["seconds (measured per request)"] == pytest.approx(0.4 * row["items"])
    assert row["usd"] == pytest.approx(0.3 * row["items"] + 0.4 * row["items"] / 1000)


# ------------------------------------------------------------------ orthogonality, grouping respected


def _split_only(n_per_family=8, seed=0):
    """Two axes that differ only between families (independent within each): the confound of issue 20."""
    rng = np.random.default_rng(seed)
    family = np.repeat(["base", "fine-tuned"], n_per_family)
    shift = (family == "fine-tuned").astype(float) * 10
    return family, shift + rng.normal(size=2 * n_per_family), -shift + rng.normal(size=2 * n_per_family)


def test_the_family_split_alone_is_no_correlation_once_grouping_is_respected():
    family, a, b = _split_only()
    assert stats.spearmanr(a, b).statistic < -0.7  # the plain correlation is the split
    controls = orthogonality.dummies(pd.DataFrame({"family": family}), ["family"])
    assert abs(orthogonality.partial_spearman(a, b, controls)) < 0.5

    def rho(v):
        return stats.spearmanr(a, v).statistic

    assert orthogonality.grouped_permutation_p(rho, b, family, 500) > 0.05
    assert orthogonality.grouped_permutation_p(rho, b, np.zeros(len(b)), 500) < 0.01  # ignoring groups: "significant"


def test_grouped_correlations_verdicts():
    rng = np.random.default_rng(4)
    n = 24
    card = pd.DataFrame(
        {
            "x": np.arange(n, dtype=float),
            "tied": np.arange(n, dtype=float) * 2 + rng.normal(0, 0.1, n),
            "free": rng.normal(size=n),
            "family": np.tile(["base", "fine-tuned"], n // 2),
            "precision": np.tile(["fp32", "fp32", "int8"], n // 3),
            "weights": [f"w{i // 2}" for i in range(n)],
        },
        index=[f"s{i}" for i in range(n)],
    )
    replicates = [card.assign(free=card.free + rng.normal(0, 0.05, n)) for _ in range(50)]
    table = orthogonality.grouped_correlations(card, replicates, ["x", "tied", "free"], margin=0.9, n_permutations=300)
    verdicts = table.set_index(["axis_a", "axis_b"]).verdict
    assert verdicts[("x", "tied")] == "correlated"
    assert verdicts[("x", "free")] in {"orthogonal within +-0.9", "inconclusive"}
    assert (table.weight_sets == n // 2).all() and (table.stages == n).all() and (table.families == 2).all()
    assert "weight sets" in orthogonality.orthogonality_summary(table, 0.9)


def _stage(name, answers, gold, seconds=(0.1, 0.2, 0.3)):
    return StageScores(
        name,
        gold,
        answers,
        float(np.median(seconds)),
        request_seconds={"SST-5": np.array(seconds), "own": np.array(seconds)},
        tokens_per_item={"own": 5.0},
    )


def test_resampled_cards_resample_weight_sets_items_and_timings():
    rng = np.random.default_rng(5)
    gold = {"own": rng.normal(size=40), "ood": rng.normal(size=30)}
    scores = [
        _stage(f"{w}-{p}", {k: v + rng.normal(0, 0.5, len(v)) for k, v in gold.items()}, gold)
        for w in ("a", "b", "c")
        for p in ("fp32", "int8")
    ]
    stages = pd.DataFrame(
        {
            "weights": [s.stage.split("-")[0] for s in scores],
            "family": ["base", "base", "ft", "ft", "ft", "ft"],
            "precision": [s.stage.split("-")[1] for s in scores],
        },
        index=[s.stage for s in scores],
    )

    def card(chosen, rows, seconds):
        return scorecard(
            chosen, ["own"], ["ood"], {"own": 0.0, "ood": 0.0}, 0.2, 0.1, 1.0, rows=rows, seconds=seconds, repeats=20
        )

    replicates = orthogonality.resampled_cards(scores, stages, card, replicates=30, seed=0)
    assert any(any("#" in name for name in r.index) for r in replicates)  # a weight set drawn twice
    assert all(r.groupby("weights").size().isin([2, 4, 6]).all() for r in replicates)  # variants travel together
    assert len({round(r.generalization.iloc[0], 6) for r in replicates}) > 1  # items resampled
    assert len({round(r.serving_usd_per_1000.iloc[0], 9) for r in replicates}) > 1  # timings resampled


# ------------------------------------------------------------------ quality-adjusted cost


def test_cost_per_correct_answer_and_the_adjusted_break_even():
    gold = {"SST-5": np.array([1.0, 2, 3, 4, 5] * 4)}
    right = replace(_stage("right", {"SST-5": gold["SST-5"]}, gold), modes={"SST-5": gold["SST-5"]})
    half = replace(
        _stage("half", {"SST-5": gold["SST-5"]}, gold), modes={"SST-5": np.where(np.arange(20) % 2, gold["SST-5"], 3.0)}
    )
    table = quality_adjusted.adjusted_costs(
        [right, half], [1, 2, 3, 4, 5], "SST-5", {"OpenAI/gpt-4o-mini": (0.5, "ASSUMED")}, 300, 2, 3.6, 1.0, prior=3.0
    ).set_index("name")
    assert table.loc["constant prior (trivial baseline)", "accuracy"] == pytest.approx(0.2)
    assert table.loc["right", "accuracy"] == 1 and table.loc["half", "accuracy"] == pytest.approx(0.6)
    assert table.loc["half", "usd_per_1000_correct"] == pytest.approx(table.loc["half", "usd_per_1000"] / 0.6)
    api = table.loc["OpenAI/gpt-4o-mini"]
    assert api.quality_source == "ASSUMED" and api.usd_per_1000_correct == pytest.approx(api.usd_per_1000 / 0.5)
    assert len(table) == 4  # APIs without a quality figure are left out, never assumed equal
    breaks = quality_adjusted.adjusted_break_even(table.reset_index(), ["half"], ["OpenAI/gpt-4o-mini"], 3.6, 1.0)
    row = breaks.iloc[0]
    # Break-even volumes are machine cost / API price: per correct answer the API costs 2x, per request 1x.
    adjusted, plain = row["break_even_million_correct_per_month"], row.iloc[-1]
    assert np.isinf(adjusted) or adjusted == pytest.approx(plain / 2)


# ------------------------------------------------------------------ where fine-tuning helped or hurt


def test_finetuning_effects_say_helped_hurt_or_inconclusive():
    rng = np.random.default_rng(6)
    gold = {"SICK": rng.normal(size=200)}
    base = _stage("base", {"SICK": gold["SICK"] + rng.normal(0, 0.5, 200)}, gold)
    worse = _stage("worse", {"SICK": gold["SICK"] + rng.normal(0, 2.0, 200)}, gold)
    same = _stage("same", {"SICK": base.predictions["SICK"].copy()}, gold)
    effects = stage_scoring.finetuning_effects([base, worse, same], "base", n_resamples=200).set_index(
        ["stage", "metric"]
    )
    assert effects.loc[("worse", "spearman"), "verdict"] == "hurt" and effects.loc[("worse", "rmse"), "better"] < 0
    assert effects.loc[("same", "spearman"), "verdict"] == "inconclusive"
    assert "hurt**: worse on SICK, spearman" in stage_scoring.effects_summary(effects.reset_index(), "base")


# ------------------------------------------------------------------ arms and profiles


def test_arm_changes_are_checked():
    with pytest.raises(ValueError, match="objectve"):
        stage_grid.arm_changes({"objectve": "soft"})
    assert stage_grid.arm_changes({"tasks": ["stsb"], "seed": 1}) == {"tasks": ("stsb",), "seed": 1}


def test_arms_are_small_cached_runs_and_vary_one_field(monkeypatch):
    from workbench.lifecycle import recipe
    from workbench.lifecycle.finetune import FinetuneConfig
    from workbench.lifecycle.hpo import best_config

    table = pd.DataFrame({"lr": [3e-4], "objective": [1.0], "batch_size": [4], "max_steps": [2]})
    base = FinetuneConfig(method="full", train_layers=2, batch_size=4, tasks=("sst5", "stsb"))
    # An arm is the search's choice on a small budget with one field changed: the same settings, the same cached run.
    before = replace(
        best_config(table, base),
        objective="soft",
        max_examples=recipe.profile_sizes("smoke").arm_examples,
        epochs=1,
        max_steps=None,
        eval_every=0,
        patience=None,
        save_every=0,
    )
    assert recipe.arm_config("smoke", base, table, objective="soft").run_id() == before.run_id()
    seen = []
    monkeypatch.setattr(recipe, "finetune", lambda config, examples, dev, progress: seen.append((config, examples)))
    monkeypatch.setattr(recipe, "run_dir", lambda config, train, dev: f"/tmp/runs/{config.run_id()}")
    items = [object()] * 10
    splits = {"sst5": {"train": items, "dev": items}, "stsb": {"train": items, "dev": items}}
    recipe.train_arm("smoke", base, table, splits, fraction=0.5, objective="ce")
    recipe.train_arm("smoke", base, table, splits, objective="ce", tasks=("stsb",), seed=1)
    (half, _), (stsb, examples) = seen
    per_task = min(recipe.profile_sizes("smoke").arm_examples, 10)
    assert half.max_steps == round(0.5 * 2 * -(-per_task // 4))  # half the planned steps, a run of its own
    assert stsb.tasks == ("stsb",) and list(examples) == ["stsb"] and stsb.seed == 1 and stsb.max_steps is None


@pytest.mark.parametrize("profile", ["default", "full"])
def test_the_profile_gives_twelve_stages_and_twelve_held_out_roofline_passes(profile):
    sizes = load_profile(profile)[SECTION]
    arms = sum(len(sizes["arm_variants"].get(arm, ["fp32"])) for arm in sizes["arms"])
    assert len(sizes["base_variants"]) + len(sizes["finetuned_variants"]) + arms >= 12
    assert len(sizes["passes"]) // 2 >= 12  # every other pass is held out, at each thread count
    for spec in sizes["arms"].values():
        stage_grid.arm_changes(spec)
