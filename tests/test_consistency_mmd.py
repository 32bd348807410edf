"""The MMD baseline (workbench.consistency.mmd_baseline) on small synthetic data."""

import numpy as np
import pytest
from model_equality_testing.algorithm import run_two_sample_test
from model_equality_testing.distribution import CompletionSample

from workbench.consistency.mmd_baseline import (
    MMDConfig,
    encode_responses,
    mmd_permutation_test,
    mmd_power_curve,
    mmd_test,
    token_cube,
)
from workbench.consistency.power import power_curve, score_cube
from workbench.consistency.responses import synthetic_responses


@pytest.fixture(scope="module")
def table():
    return synthetic_responses(n_queries=20, n_seeds=6, seed=4, stage_shifts={"A": 0.0, "A2": 0.0, "B": 0.7})


def test_tokenizers():
    assert encode_responses(["hé"], MMDConfig(max_length=4)).tolist() == [[104, 233, -1, -1]]
    words = encode_responses(["a b", "b c a"], MMDConfig(tokenizer="whitespace", max_length=2))
    assert words.tolist() == [[0, 1], [1, 2]]
    custom = encode_responses(["xyz"], MMDConfig(tokenizer=lambda text: [len(text)], max_length=2))
    assert custom.tolist() == [[3, -1]]
    with pytest.raises(ValueError, match="tokenizer must be"):
        encode_responses(["x"], MMDConfig(tokenizer="bpe"))


def test_token_cube_lines_up_queries_and_stages(table):
    cube = token_cube(table, "A", "B", MMDConfig(max_length=20), n_samples=4)
    assert cube.tokens_a.shape == cube.tokens_b.shape == (20, 4, 20)
    response = table[(table.stage == "B") & (table.query_id == cube.query_ids[3])].response.iloc[2]
    expected = encode_responses([response], MMDConfig(max_length=20))[0]
    np.testing.assert_array_equal(cube.tokens_b[3, 2], expected)
    with pytest.raises(ValueError, match="exceeds"):
        token_cube(table, "A", "B", n_samples=7)


def test_statistic_is_the_packages(table):
    cube = token_cube(table, "A", "B", MMDConfig(max_length=30))
    result = mmd_permutation_test(cube.tokens_a, cube.tokens_b, MMDConfig(n_permutations=20))
    # The Gram-matrix path and the package give the same statistic and the same permutation null.
    through_package = mmd_permutation_test(
        cube.tokens_a, cube.tokens_b, MMDConfig(n_permutations=20, stat_type="mmd_hamming_package")
    )
    assert result.statistic == pytest.approx(through_package.statistic, rel=1e-12)
    assert result.p_value == through_package.p_value
    # The package caches every CompletionSample it sees; the baseline clears that cache.
    assert CompletionSample.sequences.fget.cache_info().currsize == 0
    n_queries, k, length = cube.tokens_a.shape
    samples = [
        CompletionSample(np.repeat(np.arange(n_queries), k), tokens.reshape(-1, length), n_queries)
        for tokens in (cube.tokens_a, cube.tokens_b)
    ]
    _, statistic = run_two_sample_test(*samples, pvalue_type="dummy", stat_type="mmd_hamming")
    assert result.statistic == pytest.approx(statistic)


@pytest.mark.parametrize("tokenizer, length", [("char", 50), ("whitespace", 12)])
def test_detects_a_shift_but_not_a_rerun(table, tokenizer, length):
    config = MMDConfig(tokenizer=tokenizer, max_length=length, n_permutations=200)
    shifted = mmd_test(table, "A", "B", config, n_samples=5, seed=1)
    rerun = mmd_test(table, "A", "A2", config, n_samples=5, seed=1)
    assert shifted.p_value < 0.05 < rerun.p_value
    assert 1 / 201 <= shifted.p_value <= 1 and shifted.n_permutations == 200
    assert (shifted.n_queries, shifted.samples_per_query) == (20, 5)


def test_power_curve_sits_next_to_simcts(table):
    config = MMDConfig(tokenizer="whitespace", max_length=12, n_permutations=50)
    curve = mmd_power_curve(token_cube(table, "A", "B", config), [5, 20], 3, n_runs=10, config=config)
    simct = power_curve(
        score_cube(table, "A", "B", lambda pairs: -pairs.response1.str.len().to_numpy()), [5, 20], 3, n_runs=10
    )
    assert list(curve.columns) == list(simct.columns)
    assert curve.n_queries.tolist() == [5, 20] and curve.samples_per_query.tolist() == [3, 3]
    assert curve.rate.iloc[1] >= 0.5 and ((0 <= curve.rate) & (curve.rate <= 1)).all()
