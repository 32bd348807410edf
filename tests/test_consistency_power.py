"""False alarms, power and planning (workbench.consistency.power) on synthetic stages.

The pair score is ROUGE-1 (lexical features only, so no encoder is needed): the power-analysis
machinery is score-agnostic and the classifier is exercised in test_consistency_simct.py.
"""

import numpy as np
import pytest

from workbench.consistency.features import FeatureConfig, PairFeaturizer
from workbench.consistency.power import (
    aa_false_alarm_rate,
    pilot_effect_size,
    plan_queries,
    power_curve,
    queries_for_power,
    score_cube,
    t_test_power,
)
from workbench.consistency.responses import synthetic_responses
from workbench.consistency.simct import one_sided_paired_t

FEATURIZER = PairFeaturizer(FeatureConfig(use_embeddings=False))


def rouge1(pairs):
    return FEATURIZER.transform(pairs)["rouge1"].to_numpy()


@pytest.fixture(scope="module")
def table():
    return synthetic_responses(n_queries=60, n_seeds=12, seed=11, stage_shifts={"A": 0.0, "A2": 0.0, "B": 0.25})


@pytest.fixture(scope="module")
def cube(table):
    return score_cube(table, "A", "B", rouge1)


def test_cube_holds_the_score_of_every_pair(table, cube):
    assert cube.within.shape == cube.across.shape == (60, 12, 12)
    assert np.isnan(np.diagonal(cube.within, axis1=1, axis2=2)).all()
    np.testing.assert_array_equal(cube.within, np.swapaxes(cube.within, 1, 2))
    responses = table.set_index(["query_id", "stage", "seed"]).response
    q = cube.query_ids.index("7")
    expected = FEATURIZER.lexical_features(responses[("7", "A", 2)], responses[("7", "B", 9)])["rouge1"]
    assert cube.across[q, 2, 9] == pytest.approx(expected)
    expected = FEATURIZER.lexical_features(responses[("7", "A", 4)], responses[("7", "A", 1)])["rouge1"]
    assert cube.within[q, 4, 1] == pytest.approx(expected)


def test_cube_checks_sample_counts(table):
    with pytest.raises(ValueError, match="n_samples <= 12"):
        score_cube(table, "A", "B", rouge1, n_samples=13)
    assert score_cube(table[table.stage == "A"], "A", None, rouge1, n_samples=4).within.shape == (60, 4, 4)


@pytest.mark.parametrize("samples_per_query", [2, 6])
def test_aa_false_alarm_rate_is_near_alpha(cube, samples_per_query):
    result = aa_false_alarm_rate(
        cube, samples_per_query=samples_per_query, n_runs=1000, alpha=0.05, seed=samples_per_query
    )
    assert result.n_runs == 1000 and result.n_queries == 60
    assert 0.025 <= result.rate <= 0.075
    assert result.ci_low < result.rate < result.ci_high and result.ci_high - result.ci_low < 0.04


def test_a_rerun_stage_is_a_false_alarm_not_a_change(table):
    rerun = score_cube(table, "A", "A2", rouge1, n_samples=6)
    curve = power_curve(rerun, [40], n_runs=400, seed=2)
    assert curve.rate.iloc[0] < 0.1


def test_aa_needs_two_disjoint_halves(cube):
    with pytest.raises(ValueError, match="2 \\* samples_per_query <= 12"):
        aa_false_alarm_rate(cube, samples_per_query=7)
    with pytest.raises(ValueError, match="without replacement"):
        aa_false_alarm_rate(cube, n_queries=61, replace=False)


def test_power_grows_with_queries_and_samples(cube):
    curve = (
        power_curve(cube, [5, 20, 60], [3, 8], n_runs=300, seed=1).set_index(["samples_per_query", "n_queries"]).rate
    )
    assert curve[(3, 5)] < curve[(3, 20)] < curve[(3, 60)]
    assert curve[(8, 5)] < curve[(8, 20)] < curve[(8, 60)]
    assert (curve.loc[8].to_numpy() > curve.loc[3].to_numpy()).all()
    assert curve[(8, 60)] > 0.9 and curve[(3, 5)] < 0.2


def test_planner_is_monotone():
    assert queries_for_power(0.2) > queries_for_power(0.5) > queries_for_power(1.0)
    assert queries_for_power(0.5, power=0.9) > queries_for_power(0.5, power=0.8)
    assert queries_for_power(0.5, alpha=0.01) > queries_for_power(0.5, alpha=0.05)
    with pytest.raises(ValueError, match="effect_size must be > 0"):
        queries_for_power(0.0)


@pytest.mark.parametrize("effect_size", [0.3, 0.8])
def test_planned_queries_reach_the_power_in_simulation(effect_size):
    n = queries_for_power(effect_size, power=0.8, alpha=0.05)
    assert t_test_power(effect_size, n) >= 0.8 > t_test_power(effect_size, n - 1)
    rng = np.random.default_rng(0)
    differences = rng.normal(effect_size, 1.0, size=(4000, n))  # within - across, d_z = effect_size
    _, p = one_sided_paired_t(differences, np.zeros_like(differences))
    # The formula's power at n (>= 0.8, a little above it because n is an integer) is what
    # simulated t-tests achieve.
    assert (p < 0.05).mean() == pytest.approx(float(t_test_power(effect_size, n)), abs=0.02)


def test_plan_agrees_with_the_empirical_power_curve(cube):
    plan = plan_queries(cube, power=0.8, samples_per_query=6, n_queries_grid=[10, 20, 40], n_runs=200)
    assert plan.effect_size == pytest.approx(pilot_effect_size(cube, 6))
    assert 5 < plan.n_queries_formula < 60
    simulated = power_curve(cube, [plan.n_queries_formula], 6, n_runs=1000, seed=5).rate.iloc[0]
    assert simulated == pytest.approx(0.8, abs=0.07)
    assert plan.n_queries_empirical == 40 and list(plan.curve.n_queries) == [10, 20, 40]
