"""The regression-aware fine-tuning ladder: its rows, rules, paired tests and seed summary; the recipe's choice of
the default objective; calibration's reliability points and spread report; the no-signal marking."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest

from workbench import provenance
from workbench.lifecycle import recipe
from workbench.metric_aware import inference_study as study
from workbench.metric_aware import ladder, plots
from workbench.metric_aware.calibration import reliability, spread_report, with_temperature
from workbench.metric_aware.experiments import synthetic_run
from workbench.profiles import available_profiles, load_profile

matplotlib.use("Agg")


def _runs(items: int = 300) -> dict[str, dict]:
    """Four stages on the same synthetic items: a calibrated, a flat (no signal), a sharp and a shifted one."""
    truth = synthetic_run(items=items, k=0, seed=1)
    flat = replace(truth, exact_probs=np.full_like(truth.exact_probs, 0.2), greedy=[3.0] * items)
    gold_index = (truth.gold - 1).astype(int)
    sharp = replace(truth, exact_probs=np.eye(5)[gold_index] * 0.9 + 0.02, greedy=list(truth.gold))
    shifted = replace(truth, exact_probs=np.roll(truth.exact_probs, 1, axis=1))
    return {"toy": {"base": flat, "ce": truth, "soft": sharp, "mix": shifted}}


def test_the_table_has_every_rung_baseline_and_anchor_in_long_form():
    table = ladder.ladder_table(_runs(), seed=0, n_resamples=50)
    assert list(table.columns) == ladder.COLUMNS
    measured = table[table.seed.notna()]
    assert list(dict.fromkeys(measured.arm)) == [arm.name for arm in ladder.ARMS]
    assert len(measured) == len(ladder.ARMS) * len(ladder.METRICS)
    assert set(table[table.seed.isna()].arm) == {"bert-base (published)"}
    scored = measured.dropna(subset=["value"])  # a constant answer (the flat stage) has no Spearman
    assert set(measured.arm[measured.value.isna()]) == {"few-shot greedy", "few-shot rail"}
    assert (scored.ci_low <= scored.value + 1e-12).all() and (scored.value <= scored.ci_high + 1e-12).all()


def test_rail_reads_each_metric_with_its_bayes_rule_and_greedy_reads_the_decoded_answer():
    runs = _runs()
    table = ladder.ladder_table(runs, seed=0, n_resamples=20).set_index(["arm", "metric"]).value
    truth = runs["toy"]["ce"]
    mean = truth.exact_probs @ truth.grid
    assert table["ce rail", "rmse"] == pytest.approx(np.sqrt(np.mean((mean - truth.gold) ** 2)))
    mode = truth.grid[truth.exact_probs.argmax(axis=1)]
    assert table["ce rail", "exact_match"] == pytest.approx(np.mean(mode == truth.gold))
    assert table["ce greedy", "exact_match"] == pytest.approx(np.mean(np.array(truth.greedy) == truth.gold))
    assert np.isnan(table["few-shot greedy", "spearman"])  # a constant answer ranks nothing
    assert table["soft rail", "exact_match"] == 1.0  # the sharp stage puts its mode on the gold


def test_adjacent_tests_pair_each_rung_with_the_one_below_and_see_a_real_gain():
    tests = ladder.adjacent_tests(_runs(), n_resamples=200).set_index(["arm", "metric"])
    assert tests.loc[("few-shot rail", "rmse"), "against"] == "few-shot greedy"
    assert tests.loc[("raft+ce rail", "rmse"), "against"] == "soft rail"
    # the sharp, right stage beats the calibrated one on every metric; the shifted one loses to it
    assert tests.loc[("soft rail", "exact_match"), "better"] and tests.loc[("soft rail", "rmse"), "better"]
    assert not tests.loc[("raft+ce rail", "rmse"), "better"] and tests.loc[("raft+ce rail", "rmse"), "difference"] > 0


def test_missing_stages_drop_their_rungs_and_baselines_join_the_table():
    runs = {"toy": {stage: run for stage, run in _runs()["toy"].items() if stage in ("ce", "soft")}}
    gold = runs["toy"]["ce"].gold
    three, mean = np.full(len(gold), 3.0), np.full(len(gold), 3.04)  # the train mean, off the grid
    prior = {"prior mean": mean, "prior median": three, "prior mode": three}
    baselines = SimpleNamespace(
        predictions=prior | {"tfidf ridge": gold}, on_grid=prior | {"prior mean": three, "tfidf ridge": gold}
    )
    table = ladder.ladder_table(runs, seed=2, baselines={"toy": baselines}, n_resamples=20, published=False)
    assert list(dict.fromkeys(table.arm)) == ["ce greedy", "ce rail", "soft rail", "prior", "tfidf ridge"]
    values = table.set_index(["arm", "metric"]).value
    assert values["tfidf ridge", "rmse"] == 0 and values["prior", "exact_match"] == pytest.approx(np.mean(gold == 3))
    assert values["prior", "rmse"] == pytest.approx(np.sqrt(np.mean((gold - 3.04) ** 2)))  # the mean, not snapped
    assert (table.seed == 2).all()


def test_seed_summary_gives_mean_and_spread_over_seeds_and_leaves_published_rows_out():
    rows = [["t", "ce rail", s, "rmse", v, v, v] for s, v in enumerate([1.0, 2.0, 3.0])]
    rows.append(["t", "bert-base (published)", np.nan, "rmse", 0.5, np.nan, np.nan])
    summary = ladder.seed_summary(pd.DataFrame(rows, columns=ladder.COLUMNS))
    expected = {"mean": 2.0, "sd": 1.0, "min": 1.0, "max": 3.0, "seeds": 3}
    assert summary.loc[("t", "ce rail", "rmse")].to_dict() == expected
    assert len(summary) == 1


def test_the_ladder_panel_and_the_reliability_diagram_draw():
    import matplotlib.pyplot as plt

    table = ladder.ladder_table(_runs(60), seed=0, n_resamples=20)
    arms = [arm.name for arm in ladder.ARMS] + ["bert-base (published)"]
    ax = plots.ladder_panel(plt.subplots()[1], table, "toy", "rmse", arms)
    assert len(ax.get_yticklabels()) == len(ladder.ARMS)
    run = _runs(200)["toy"]["ce"]
    run.tuned_temperature = 1.5
    curves = study.reliability_curves(run)
    assert list(curves) == ["T=1", "tuned T=1.50"] and curves["T=1"].n.sum() == 200
    plots.reliability_diagram(plt.subplots()[1], curves, "toy")
    plt.close("all")


def test_ladder_plans_share_items_across_seeds_and_every_profile_trains_equal_arms():
    for name in available_profiles():
        plans = ladder.plans(name)
        assert set(plans) == {"sst5", "stsb", "sick"} and all(p.seed == 0 and p.k == 0 for p in plans.values())
        sizes = recipe.profile_sizes(name)
        # every fine-tuned rung's model is one of the profile's arms, and no arm goes unread
        assert set(sizes.objectives) == {arm.stage for arm in ladder.ARMS if arm.stage != "base"}
        assert sizes.final.patience is None  # no early stopping: every arm trains the same steps
        assert "gsm8k" not in load_profile(name)["metric_aware"]["base"]


# ------------------------------------------------------------------ the recipe's default objective


def _result(history: list[tuple[int, float]], best_step: int):
    records = [{"step": step, "objective": loss, "scores": {"sst5": {"accuracy": 1 - loss}}} for step, loss in history]
    return SimpleNamespace(dev_history=records, best_step=best_step, steps=history[-1][0], examples=8, throughput={})


def test_the_default_objective_is_the_arm_whose_kept_weights_win_on_dev():
    results = {
        "ce": _result([(2, 0.5), (4, 0.45)], best_step=4),
        "soft": _result([(2, 0.4), (4, 0.6)], best_step=2),  # kept step 2, not the last evaluation
        "mse": _result([(2, 0.7), (4, 0.55)], best_step=4),
    }
    assert recipe.kept_record(results["soft"])["objective"] == 0.4
    assert recipe.best_objective(results) == "soft"
    table = recipe.objective_table(results)
    assert list(table.objective) == ["ce", "soft", "mse"] and list(table["kept step"]) == [4, 2, 4]


# ------------------------------------------------------------------ calibration and signal


def test_a_calibrated_distribution_is_as_wide_as_the_errors_of_its_mean_and_heating_it_widens_and_centres_it():
    run = synthetic_run(items=4000, k=0, seed=3)
    calibrated = spread_report(run.exact_probs, run.grid, run.gold)
    assert calibrated["sd / rmse"] == pytest.approx(1.0, abs=0.05)
    hot, cold = (spread_report(with_temperature(run.exact_probs, t), run.grid, run.gold) for t in (1.5, 0.5))
    assert hot["sd / rmse"] > 1.02 and cold["sd / rmse"] < 0.9
    assert hot["rmse of mean"] > calibrated["rmse of mean"] < cold["rmse of mean"]  # the calibrated mean is best
    centre = "distance from grid centre"
    assert cold[centre] > calibrated[centre] > hot[centre]
    points = reliability(run.exact_probs, (run.gold - 1).astype(int))
    assert np.average(np.abs(points.accuracy - points.confidence), weights=points.n) < 0.05


def test_models_without_signal_get_no_verdict():
    index = pd.MultiIndex.from_tuples(
        [("base", "stsb", "rmse", "prior mean"), ("finetuned", "stsb", "rmse", "prior mean")],
        names=["model", "task", "metric", "against"],
    )
    skill = pd.DataFrame({"difference": [-0.01, -0.3], "p": [0.2, 0.0]}, index=index)
    calibration = pd.DataFrame(
        {"temperature": [1.2, 1.5]}, index=pd.MultiIndex.from_tuples([("base", "stsb"), ("finetuned", "stsb")])
    ).rename_axis(["model", "task"])
    signal = study.signal_table(skill, calibration, alpha=0.05)
    assert signal.signal.tolist() == [False, True]
    calibration.loc[("finetuned", "stsb"), "temperature"] = 19.999
    assert study.signal_table(skill, calibration, 0.05).loc[("finetuned", "stsb"), "why not"].startswith("tuned T")
    checks = pd.DataFrame(
        {"verdict": ["fails", "holds"], "holds": [False, True]},
        index=pd.MultiIndex.from_tuples(
            [("base", "stsb", "exact", "rmse"), ("finetuned", "stsb", "exact", "rmse")],
            names=["model", "task", "family", "metric"],
        ),
    )
    marked = study.mark_no_signal(checks, signal)
    assert marked.verdict.tolist() == ["no signal (exact mean does not beat the prior)", "holds"]


# ------------------------------------------------------------------ the seeds command


def test_seeds_reads_seed_0_from_the_main_job_and_summarises_the_fine_tuned_arms(tmp_path, monkeypatch):
    from workbench.lifecycle import seeds

    def rows(seed, value):
        arms = ["few-shot rail", "ce rail", "soft rail"]
        return pd.DataFrame([["t", arm, seed, "rmse", value, value, value] for arm in arms], columns=ladder.COLUMNS)

    rows(0, 1.0).to_csv(tmp_path / "ladder.csv", index=False)  # what notebook 02 wrote, and its provenance
    seed0_stage = {"name": "finetuned/a/model", "stage": "s0"}
    provenance.update(tmp_path, {"ladder.csv": {"models": [seed0_stage]}})
    trained = []

    def seed_rows(profile, model, seed, device, n_resamples):
        trained.append(seed)
        return rows(seed, 1.0 + seed).query("arm != 'few-shot rail'"), "ce", [{"name": f"finetuned/{seed}/model"}]

    monkeypatch.setattr(seeds, "seed_rows", seed_rows)
    # seed 0's dev winner comes from the table notebook 04 wrote, not from training its arms again
    objectives = pd.DataFrame({"objective": ["ce", "ce", "soft", "soft"], "task": ["a", "b"] * 2})
    objectives.assign(**{"selection loss": [0.6, 0.6, 0.55, 0.55]}).to_csv(tmp_path / "04_objectives.csv", index=False)
    monkeypatch.setattr(seeds.recipe, "arm_results", lambda *args, **kwargs: pytest.fail("seed 0 trained again"))
    cache = tmp_path / "cache"  # what the run found: one earlier file (its figure is then not a cold one)
    (cache / "finetuned").mkdir(parents=True)
    (cache / "finetuned" / "training.json").write_text("{}")
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(cache))
    summary = seeds.run_seeds("smoke", "m", 3, tmp_path, n_resamples=10).set_index("arm")
    assert trained == [1, 2]  # seed 0 is the main job's
    assert summary.loc["ce rail", "mean"] == 2.0 and summary.loc["ce rail", "seeds"] == 3
    assert "few-shot rail" not in summary.index  # no training, no seeds
    assert summary["default model"].to_dict() == {"ce rail": False, "soft rail": True}
    record = json.loads((tmp_path / "seeds_run.json").read_text())
    assert record["seeds"] == [0, 1, 2] and record["wall_seconds"] >= 0
    assert record["cache_at_start"] == {"files": 1, "gib": 0.0}
    assert sorted(pd.read_csv(tmp_path / "seeds.csv").seed.unique()) == [0, 1, 2]
    # its files are recorded like the main job's: writer, commit, the stages of every seed
    entries = provenance.read(tmp_path)
    for name in ("seeds.csv", "seeds_summary.csv", "seeds_run.json"):
        assert entries[name]["writer"] == "python -m workbench seeds" and entries[name]["profile"] == "smoke"
        assert not [field for field in provenance.FIELDS if field not in entries[name]]
    stages = [m["name"] for m in entries["seeds.csv"]["models"]]
    assert stages == ["finetuned/1/model", "finetuned/2/model", "finetuned/a/model"]


def test_without_notebook_04s_table_the_seeds_command_reads_seed_0s_winner_from_its_runs(tmp_path, monkeypatch):
    from workbench.lifecycle import seeds

    monkeypatch.setattr(seeds.recipe, "arm_results", lambda *args, **kwargs: {"ce": None, "mix": None})
    monkeypatch.setattr(seeds.recipe, "best_objective", lambda results: list(results)[-1])
    assert seeds.seed0_winner(tmp_path, "smoke", "m") == "mix"
