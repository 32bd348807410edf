"""Baselines, calibration and the paired test that decides the pattern check."""

import numpy as np
import pytest

from workbench.metric_aware.baselines import baseline_predictions, pair_features, prior_predictions, tfidf_ridge
from workbench.metric_aware.bootstrap import paired_bootstrap
from workbench.metric_aware.calibration import calibration_report, fit_temperature, with_temperature
from workbench.metric_aware.experiments import comparison_table, pattern_check, synthetic_run
from workbench.tasks import Example


def test_priors_are_the_train_statistics():
    priors = prior_predictions([1.0, 2.0, 2.0, 4.0, 5.0], n=3)
    assert priors["prior mean"].tolist() == [2.8] * 3
    assert priors["prior median"][0] == 2.0 and priors["prior mode"][0] == 2.0
    # STS-B-like gold values are snapped to the grid before taking the mode
    assert prior_predictions([3.8, 3.9, 1.0], n=1, grid=np.arange(0, 5.1, 0.5))["prior mode"][0] == 4.0


def test_tfidf_ridge_learns_words_that_carry_the_label():
    rng = np.random.default_rng(0)
    words = {1.0: ["awful", "dull", "boring"], 5.0: ["great", "superb", "moving"]}

    def make(n):
        labels = rng.choice([1.0, 5.0], size=n)
        return [f"the film was {rng.choice(words[y])} and {rng.choice(words[y])}" for y in labels], labels

    train_texts, train_labels = make(200)
    test_texts, test_labels = make(50)
    predictions = tfidf_ridge(train_texts, train_labels, test_texts, low=1, high=5)
    assert np.corrcoef(predictions, test_labels)[0, 1] > 0.9 and predictions.min() >= 1 and predictions.max() <= 5


def test_baselines_snap_to_the_grid_for_exact_match():
    train = [Example(f"t{i}", f"word{i % 3} text", float(i % 3 + 1)) for i in range(30)]
    test = [Example(f"s{i}", f"word{i % 3} text", float(i % 3 + 1)) for i in range(6)]
    result = baseline_predictions(train, test, grid=[1.0, 2.0, 3.0], supervised=("tfidf ridge",))
    assert set(result.predictions) == {"prior mean", "prior median", "prior mode", "tfidf ridge"}
    assert set(np.unique(result.on_grid["tfidf ridge"])) <= {1.0, 2.0, 3.0}
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_predictions(train, test, grid=[1.0, 2.0, 3.0], supervised=("bert",))


def test_pair_features_are_symmetric():
    u, v = np.eye(3)[:2], np.eye(3)[[1, 1]]
    assert np.allclose(pair_features(u, v), pair_features(v, u))


def test_temperature_recovers_an_overconfident_model():
    rng = np.random.default_rng(1)
    true = rng.dirichlet(np.ones(5), size=3000)
    gold = (rng.random((3000, 1)) > true.cumsum(axis=1)).sum(axis=1)
    sharpened = with_temperature(true, 0.5)  # the "model" is the truth at temperature 0.5
    fitted = fit_temperature(sharpened, gold)
    assert fitted == pytest.approx(2.0, rel=0.1)
    report = calibration_report(sharpened, gold.astype(float) + 1, np.arange(1.0, 6.0), fitted)
    assert report["nll tuned T"] < report["nll"] and report["ece tuned T"] < report["ece"]


def test_paired_test_false_alarm_rate_is_near_alpha_on_a_null():
    # Two rules with the same expected error: their item errors are exchangeable.
    rng = np.random.default_rng(0)
    rejections = 0
    trials = 200
    for trial in range(trials):
        gold = rng.normal(size=100)
        a, b = gold + rng.normal(size=100), gold + rng.normal(size=100)
        rejections += paired_bootstrap("squared_error", a, b, gold, n_resamples=400, seed=trial).p_value < 0.05
    rate = rejections / trials
    assert 0.01 <= rate <= 0.10, rate  # 0.05 +- about 2.5 binomial standard errors


def test_pattern_check_decides_from_the_paired_test():
    run = synthetic_run(items=2000, k=64)
    check = pattern_check(run, "exact", quantiles=(0.25, 0.75), n_resamples=300)
    assert check.loc["rmse", "verdict"] == "holds" and check.loc["exact_match", "verdict"] == "holds"
    assert check.loc["pinball@0.25", "expected winner"] == "q0.25" and check.loc["pinball@0.25", "verdict"] == "holds"
    assert (check.filter(like="p vs").fillna(0) <= 1).all().all()
    # On a handful of items nothing is significant: the verdict says so instead of "holds".
    small = synthetic_run(items=12, k=8)
    assert set(pattern_check(small, "exact", n_resamples=200)["verdict"]) <= {"inconclusive", "holds", "fails"}
    assert not pattern_check(small, "exact", n_resamples=200)["holds"].all()


def test_tuned_temperature_family_and_baselines_in_the_table():
    run = synthetic_run(items=300, k=16)
    run.tuned_temperature = 1.5
    baselines = baseline_predictions(
        [Example(f"t{i}", "x", float(v)) for i, v in enumerate(run.gold)],
        [Example(i, "x", 1.0) for i in run.ids],
        grid=run.grid,
        supervised=(),
    )
    table = comparison_table(run, n_resamples=50, baselines=baselines, quantiles=(0.25,))
    assert {"tuned T mean", "tuned T mode", "exact q0.25", "prior mean", "prior mode"} <= set(table.index)
    assert table.loc["tuned T mode", "exact_match"] == table.loc["exact mode", "exact_match"]  # T keeps the ranking
    assert "pinball@0.25" in table and table.loc["prior mean", "rmse"] == pytest.approx(np.std(run.gold), rel=1e-6)
