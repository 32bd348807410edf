"""SimCT's response-wise and model-wise tests (workbench.consistency.simct) on synthetic stages.

Ground truth: T0, A and A2 draw from the same generator (shift 0), T1 and B from shifted ones.
The classifier trains on T0 vs T1 and is evaluated on A, A2 and B only.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.consistency.features import PairFeaturizer
from workbench.consistency.responses import labelled_pairs, synthetic_responses
from workbench.consistency.simct import (
    ResponseWiseConfig,
    ResponseWiseTest,
    StageOverlapError,
    model_wise_test,
    one_sided_paired_t,
    paired_consistency_t_test,
    per_query_scores,
    query_type_ablation,
)

TRAIN = [("T0", "T1")]


@pytest.fixture(scope="module")
def pairs():
    table = synthetic_responses(
        n_queries=30, n_seeds=5, seed=3, stage_shifts={"T0": 0.0, "T1": 0.8, "A": 0.0, "A2": 0.0, "B": 0.6}
    )
    return PairFeaturizer().transform(labelled_pairs(table, TRAIN + [("A", "B"), ("A", "A2")]))


@pytest.fixture(scope="module")
def trained(pairs):
    return ResponseWiseTest().fit(pairs, TRAIN)


def _only(pairs, stages):
    return pairs[pairs.stage1.isin(stages) & pairs.stage2.isin(stages)]


def test_fit_uses_only_the_training_stage_pairs(pairs, trained):
    assert trained.train_stages == {"T0", "T1"}
    assert "cosine" in trained.feature_names and "query_closed" in trained.feature_names
    # Rows from other stages in the input are ignored: same model as on the T0/T1 rows alone.
    on_training_rows = ResponseWiseTest().fit(_only(pairs, ["T0", "T1"]), TRAIN)
    held_out = _only(pairs, ["A", "B"])
    np.testing.assert_array_equal(trained.predict_proba(held_out), on_training_rows.predict_proba(held_out))


def test_response_wise_test_beats_chance_on_held_out_stages(pairs, trained):
    metrics = trained.evaluate(_only(pairs, ["A", "B"]))
    # 30 queries x (10 within A + 10 within B + 25 across) pairs
    assert metrics.n_pairs == 30 * 45 and metrics.n_consistent == 30 * 20
    assert metrics.auc > 0.58 and metrics.accuracy > 0.55
    assert 0 <= metrics.f1 <= 1


@pytest.mark.parametrize("stages", [["T0", "A"], ["T1", "B"], ["T0"]])
def test_scoring_training_stages_is_refused(pairs, trained, stages):
    overlapping = pd.concat([_only(pairs, ["A", "B"]), _only(pairs, stages)])
    with pytest.raises(StageOverlapError, match=stages[0]):
        trained.evaluate(overlapping)
    with pytest.raises(StageOverlapError):
        trained.predict_proba(overlapping)


def test_fit_needs_both_labels_and_fitted_before_use(pairs):
    with pytest.raises(ValueError, match="need both within-stage and cross-stage pairs"):
        ResponseWiseTest().fit(_only(pairs, ["T0"]), TRAIN)
    with pytest.raises(ValueError, match="pairs of different stages"):
        ResponseWiseTest().fit(pairs, [("T0", "T0")])
    with pytest.raises(RuntimeError, match="not fitted"):
        ResponseWiseTest().predict_proba(pairs)
    with pytest.raises(KeyError, match="PairFeaturizer.transform"):
        ResponseWiseTest().fit(pairs[["stage1", "stage2", "same_stage"]], TRAIN)


def test_query_type_ablation(pairs):
    table = query_type_ablation(pairs, TRAIN, _only(pairs, ["A", "B"]))
    assert table.index.tolist() == [True, False]
    assert {"accuracy", "f1", "auc", "n_pairs"} <= set(table.columns)
    ablated = ResponseWiseTest(ResponseWiseConfig(use_query_type=False)).fit(pairs, TRAIN)
    assert "query_closed" not in ablated.feature_names
    assert table.loc[False, "auc"] == pytest.approx(ablated.evaluate(_only(pairs, ["A", "B"])).auc)


def test_model_wise_test_detects_the_shift_and_not_the_rerun(pairs, trained):
    scored = _only(pairs, ["A", "A2", "B"])
    scored = scored.assign(score=trained.predict_proba(scored))
    shifted = model_wise_test(scored, "A", "B")
    rerun = model_wise_test(scored, "A", "A2")
    assert shifted.reject and shifted.p_value < 1e-4 and shifted.effect_size > 0.8
    assert not rerun.reject and rerun.p_value > 0.05
    assert shifted.n_queries == rerun.n_queries == 30
    assert shifted.mean_within - shifted.mean_across == pytest.approx(shifted.mean_difference)


def test_t_test_is_scipy_paired_one_sided():
    rng = np.random.default_rng(0)
    within = rng.uniform(0.5, 0.9, size=25)
    across = within - rng.normal(0.02, 0.05, size=25)
    result = paired_consistency_t_test(within, across, alpha=0.01)
    expected = stats.ttest_rel(across, within, alternative="less")
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.t_statistic == pytest.approx(expected.statistic)
    assert result.reject == (expected.pvalue < 0.01)
    difference = within - across
    assert result.effect_size == pytest.approx(difference.mean() / difference.std(ddof=1))
    # A-vs-B *more* consistent than A-vs-A is not evidence of a change (one-sided).
    assert paired_consistency_t_test(across, within).p_value > 0.5


def test_t_test_edge_cases():
    same = np.full(5, 0.7)
    assert paired_consistency_t_test(same, same).p_value == 1.0
    assert paired_consistency_t_test(same, same - 0.1).p_value == 0.0
    assert paired_consistency_t_test(same, same + 0.1).p_value == 1.0
    with pytest.raises(ValueError, match="at least 2 queries"):
        one_sided_paired_t(np.ones(1), np.ones(1))


def test_t_test_false_alarm_rate_is_alpha_under_the_null():
    rng = np.random.default_rng(1)
    within = rng.normal(0.6, 0.1, size=(4000, 20))
    across = within + rng.normal(0.0, 0.05, size=(4000, 20))
    _, p = one_sided_paired_t(within, across)
    assert abs((p < 0.05).mean() - 0.05) < 0.012


def test_per_query_scores_drops_incomplete_queries():
    scored = pd.DataFrame(
        {
            "query_id": ["1", "1", "1", "2"],
            "stage1": ["A", "A", "B", "A"],
            "stage2": ["A", "B", "A", "A"],
            "score": [0.9, 0.4, 0.6, 0.8],
        }
    )
    with pytest.warns(UserWarning, match="1 query"):
        means = per_query_scores(scored, "A", "B")
    assert means.index.tolist() == ["1"]
    assert means.loc["1"].tolist() == [0.9, pytest.approx(0.5)]
