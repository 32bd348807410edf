import numpy as np
import pytest

from workbench.inference.engine import HFEngine
from workbench.metric_aware.experiments import (
    RunConfig,
    TaskRun,
    comparison_table,
    pattern_check,
    run_task,
    strategy_predictions,
    synthetic_run,
)


def noisy_synthetic_run(items=2000, k=64):
    run = synthetic_run(items=items, k=k)
    run.samples[0][:3] = [None, None, None]  # unparseable samples are counted, not dropped
    return run


def test_strategies_apply_the_rules_and_count_invalid():
    run = noisy_synthetic_run(items=50, k=8)
    run.greedy[3] = None
    strategies = strategy_predictions(run)
    assert strategies["greedy"].fallback.sum() == 1 and strategies["greedy"].predictions[3] == 3.0  # grid midpoint
    assert strategies["greedy"].predictions[4] == run.grid[run.exact_probs[4].argmax()]
    assert strategies["mean"].invalid_samples == 3
    valid = [s for s in run.samples[1] if s is not None]
    assert strategies["mean"].predictions[1] == pytest.approx(np.mean(valid))
    assert strategies["median"].predictions[1] == pytest.approx(np.median(valid))
    assert strategies["exact mean"].predictions[1] == pytest.approx(run.exact_probs[1] @ run.grid)
    assert strategies["exact mode"].predictions[1] == run.grid[run.exact_probs[1].argmax()]
    assert strategy_predictions(run, k=1)["mean"].predictions[2] == run.samples[2][0]


def test_each_rule_wins_its_metric_on_a_calibrated_model():
    run = noisy_synthetic_run()
    table = comparison_table(run, n_resamples=200)
    for family in ("exact", "sampled"):
        check = pattern_check(run, family, n_resamples=200)
        assert (check["observed winner"] == check["expected winner"]).all(), check
        # mean vs median on RMSE is a small gap at 2000 items; the others are significant
        assert check.loc["exact_match", "holds"] and check.loc["rmse", "verdict"] != "fails", check
    assert table.loc["exact mean", "rmse"] < table.loc["greedy", "rmse"]


def test_run_save_load_roundtrip(tmp_path):
    run = synthetic_run(items=5, k=3)
    run.save(tmp_path / "run.json")
    again = TaskRun.load(tmp_path / "run.json")
    np.testing.assert_allclose(again.exact_probs, run.exact_probs)
    assert again.samples == run.samples and again.config == run.config


def test_run_task_on_the_model(lm, sst5):
    run = run_task(HFEngine(lm, progress=False), sst5, RunConfig(split="dev", limit=3, shots=2, k=4))
    assert len(run.samples) == 3 and all(len(row) == 4 for row in run.samples)
    assert run.exact_probs.shape == (3, 5) and np.allclose(run.exact_probs.sum(axis=1), 1)
    assert set(comparison_table(run, n_resamples=50).index) >= {"greedy", "one sample", "exact median"}
