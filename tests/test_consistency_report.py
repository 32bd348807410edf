"""The SimCT study helpers (workbench.consistency.study, .crossfit, .plots) on synthetic stages with a known truth.

ref, train-ref and aa draw from the same generator (shift 0); b and c are real changes. The
classifiers train on train-ref vs b (fold 0) and train-ref vs c (fold 1); ref is never trained on.
"""

import dataclasses

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from workbench.consistency.crossfit import (
    CrossFitScorer,
    featurised_score_fn,
    folds_of,
    response_wise_table,
    study_pairs,
    training_pairs,
)
from workbench.consistency.features import FeatureConfig, PairFeaturizer
from workbench.consistency.mmd_baseline import MMDConfig, MMDResult, mmd_aa_false_alarm_rate, stage_tokens
from workbench.consistency.plots import plot_change_power, plot_p_values, plot_per_query
from workbench.consistency.power import minimum_detectable_effect, t_test_power
from workbench.consistency.responses import synthetic_responses
from workbench.consistency.simct import ModelWiseResult, StageOverlapError
from workbench.consistency.study import (
    Change,
    ChangeResult,
    analyse_change,
    compare_scores,
    decision_table,
    pool_stages,
)

CHANGES = [Change("aa", "A/A", control=True), Change("b", "big change", fold=0), Change("c", "other change", fold=1)]
MMD = MMDConfig(max_length=20, n_permutations=30)


@pytest.fixture(scope="module")
def table():
    return synthetic_responses(
        n_queries=16, n_seeds=6, seed=5, stage_shifts={"ref": 0.0, "train-ref": 0.0, "aa": 0.0, "b": 0.8, "c": 0.8}
    )


@pytest.fixture(scope="module")
def featurizer():
    return PairFeaturizer(FeatureConfig(use_embeddings=False))


@pytest.fixture(scope="module")
def pairs(table, featurizer):
    return featurizer.transform(study_pairs(table, "ref", "train-ref", CHANGES))


@pytest.fixture(scope="module")
def scorer(pairs):
    return CrossFitScorer.fit(pairs, "train-ref", folds_of(CHANGES))


def test_cross_fitted_classifiers_only_score_unseen_stages(pairs, scorer):
    assert folds_of(CHANGES) == {0: ["b"], 1: ["c"]}
    assert [test.train_stages for test in scorer.tests] == [{"train-ref", "b"}, {"train-ref", "c"}]
    ref_c = pairs[pairs.stage1.isin(["ref", "c"]) & pairs.stage2.isin(["ref", "c"])]
    np.testing.assert_array_equal(scorer.predict(ref_c), scorer.tests[0].predict_proba(ref_c))
    ref_aa = pairs[pairs.stage1.isin(["ref", "aa"]) & pairs.stage2.isin(["ref", "aa"])]
    both = (scorer.tests[0].predict_proba(ref_aa) + scorer.tests[1].predict_proba(ref_aa)) / 2
    np.testing.assert_allclose(scorer.predict(ref_aa), both)
    with pytest.raises(StageOverlapError):
        scorer.predict(pairs[pairs.stage1 == "train-ref"])


def test_labellings_keep_the_right_within_pairs(pairs):
    both = training_pairs(pairs, "train-ref", "both")
    anchored = training_pairs(pairs, "train-ref", "reference")
    assert len(both) == len(pairs)
    within = anchored[anchored.stage1 == anchored.stage2]
    assert set(within.stage1) == {"train-ref"} and len(within) == 16 * 15
    assert (anchored.stage1 != anchored.stage2).sum() == (pairs.stage1 != pairs.stage2).sum()
    with pytest.raises(ValueError, match="positives"):
        training_pairs(pairs, "train-ref", "all")
    anchored_scorer = CrossFitScorer.fit(pairs, "train-ref", folds_of(CHANGES), positives="reference")
    ref_c = pairs[pairs.stage1.isin(["ref", "c"]) & pairs.stage2.isin(["ref", "c"])]
    paper_scorer = CrossFitScorer.fit(pairs, "train-ref", folds_of(CHANGES), positives="both")
    assert not np.allclose(anchored_scorer.predict(ref_c), paper_scorer.predict(ref_c))


def test_response_wise_table_evaluates_on_held_out_changes(pairs):
    report = response_wise_table(pairs, "train-ref", "ref", folds_of(CHANGES))
    assert report.positives.tolist() == ["reference"] * 4 + ["both"] * 4
    assert report[["trained on", "evaluated on"]].drop_duplicates().values.tolist() == [["b", "c"], ["c", "b"]]
    assert report.use_query_type.tolist() == [True, False] * 4
    assert report[["accuracy", "f1", "auc"]].apply(lambda column: column.between(0, 1)).all().all()
    assert (report.auc > 0.6).all()
    # per query: "both": ref + c within pairs (2 x 15) and ref-c cross pairs (36); "reference": no c within pairs
    assert report.groupby("positives").n_pairs.unique().map(list).to_dict() == {
        "both": [16 * (2 * 15 + 36)],
        "reference": [16 * (15 + 36)],
    }


def test_minimum_detectable_effect_has_the_target_power():
    for n in (5, 20, 80):
        assert t_test_power(minimum_detectable_effect(n, 0.05, 0.8), n, 0.05) == pytest.approx(0.8, abs=1e-6)
    assert minimum_detectable_effect(10) > minimum_detectable_effect(40) > minimum_detectable_effect(160)


def test_pooled_stage_and_mmd_false_alarms(table):
    pooled = pool_stages(table, ["ref", "aa"], "ref+aa")
    assert len(pooled) == 16 * 12 and set(pooled.stage) == {"ref+aa"}
    assert pooled.groupby("query_id").seed.nunique().eq(12).all()
    tokens = stage_tokens(pooled, "ref+aa", MMD)
    assert tokens.shape == (16, 12, 20)
    first = pooled[pooled.query_id == pooled.query_id.iloc[0]].response.iloc[0]
    assert tokens[0, 0, 0] == ord(first[0])
    rate = mmd_aa_false_alarm_rate(tokens, n_queries=8, samples_per_query=6, n_runs=6, config=MMD, seed=1)
    assert (rate.n_runs, rate.n_queries, rate.samples_per_query) == (6, 8, 6) and 0 <= rate.rate <= 1
    with pytest.raises(ValueError, match="2 \\* samples_per_query"):
        mmd_aa_false_alarm_rate(tokens, 8, 7, config=MMD)


def test_analysis_detects_the_change_and_not_the_control(table, featurizer, scorer):
    score_fn = featurised_score_fn(featurizer, scorer)
    results = [
        analyse_change(table, "ref", change, score_fn, [8, 16], 6, MMD, simct_runs=100, mmd_runs=4, seed=0)
        for change in CHANGES
    ]
    aa, b, _ = results
    assert b.simct.reject and b.simct.p_value < 1e-3 and b.pair_auc > 0.6
    assert not aa.simct.reject
    assert b.simct_curve.n_queries.tolist() == b.mmd_curve.n_queries.tolist() == [8, 16]
    assert b.per_query.shape == (16, 2) and (b.per_query.within > b.per_query.across).mean() > 0.8
    decisions = decision_table(results)
    assert decisions.change.tolist() == ["aa", "b", "c"]
    assert decisions.set_index("change").loc["b", "decision"] == "different"
    assert decisions.set_index("change").loc["aa", "decision"].startswith("consistent")
    assert decisions.set_index("change").loc["aa", "more_powerful"] == "n/a (control)"
    rouge_l = lambda p: featurizer.transform(p)["rougeL"].to_numpy()  # noqa: E731
    by_score = compare_scores(table, "ref", CHANGES, {"classifier": score_fn, "rougeL": rouge_l}, 6, n_runs=50)
    assert list(by_score.index) == ["aa", "b", "c"] and by_score.shape == (3, 4)
    assert by_score.loc["b", ("classifier", "p")] == pytest.approx(b.simct.p_value)
    assert by_score.loc["b", ("rougeL", "power")] > by_score.loc["aa", ("rougeL", "power")]
    import matplotlib.pyplot as plt

    power_axes = plt.subplots()[1]
    assert plot_change_power(power_axes, b) is power_axes and len(power_axes.get_lines()) == 3  # SimCT, MMD, alpha
    assert len(plot_per_query(plt.subplots()[1], b).collections) == 1

    assert plot_p_values(plt.subplots()[1], decisions).get_yticklabels()[1].get_text() == "big change"
    plt.close("all")


def _result(stage, p_value, effect, simct_rates, mmd_rates, control=False):
    """A ChangeResult with made-up numbers, for the decision logic."""
    grid = [10, 20]

    def curve(rates):
        return pd.DataFrame({"n_queries": grid, "rate": rates, "ci_low": rates, "ci_high": rates})

    simct = ModelWiseResult(
        p_value=p_value,
        reject=p_value < 0.05,
        alpha=0.05,
        t_statistic=-1.0,
        n_queries=20,
        mean_within=0.6,
        mean_across=0.5,
        mean_difference=0.1,
        effect_size=effect,
        stage_a="ref",
        stage_b=stage,
    )
    return ChangeResult(
        Change(stage, stage, control=control),
        simct,
        MMDResult(0.5, 0.0, 20, 4, 30),
        curve(simct_rates),
        curve(mmd_rates),
        0.5,
        pd.DataFrame(),
    )


def test_consistent_needs_power_against_the_subtlest_detected_change():
    strong = _result("strong", 1e-6, 2.0, [1.0, 1.0], [0.5, 0.6])
    subtle = _result("subtle", 0.01, 0.7, [0.6, 0.9], [0.6, 0.85])
    quiet = _result("quiet", 0.4, 0.1, [0.1, 0.1], [0.6, 0.8])
    control = _result("control", 0.5, 0.0, [0.05, 0.05], [0.05, 0.0], control=True)
    table = decision_table([strong, subtle, quiet, control]).set_index("change")
    assert set(table.comparable) == {"subtle"} and table.power_vs_comparable.eq(0.9).all()
    assert table.decision.tolist() == ["different", "different", "consistent", "consistent"]
    assert table.more_powerful.tolist() == ["SimCT", "similar", "MMD", "n/a (control)"]
    assert table.loc["quiet", "simct_n80"] != table.loc["quiet", "simct_n80"]  # NaN: never reaches 0.8
    assert table.loc["subtle", "simct_n80"] == 20 and table.loc["quiet", "mmd_n80"] == 20

    weak = dataclasses.replace(subtle, simct_curve=subtle.simct_curve.assign(rate=[0.3, 0.5]))
    table = decision_table([strong, weak, quiet, control]).set_index("change")
    assert table.loc["quiet", "decision"] == table.loc["control", "decision"] == "consistent (underpowered)"
    nothing_detected = decision_table([quiet, control])
    assert nothing_detected.decision.eq("consistent (underpowered)").all() and nothing_detected.comparable.eq("").all()


def test_both_labellings_and_the_feature_ablations_run_side_by_side(table):
    """The paper's labelling and the reference-only one, and the three feature sets, each give a
    p-value and a power per change; each ablation's classifiers use exactly its features."""
    from workbench.consistency.crossfit import POSITIVES, feature_ablations
    from workbench.consistency.features import FEATURE_NAMES, PAPER_FEATURES

    featurizer = PairFeaturizer(FeatureConfig())  # with the MiniLM cosine: the paper's set needs it
    pairs = featurizer.transform(study_pairs(table, "ref", "train-ref", CHANGES))
    folds = folds_of(CHANGES)
    score_fns = {
        f"labelling {positives}": featurised_score_fn(
            featurizer, CrossFitScorer.fit(pairs, "train-ref", folds, positives=positives)
        )
        for positives in POSITIVES
    }
    for name, config in feature_ablations().items():
        scorer = CrossFitScorer.fit(pairs, "train-ref", folds, config)
        used = set(scorer.tests[0].feature_names)
        expected = {
            "all features": set(FEATURE_NAMES),
            "without query type": set(FEATURE_NAMES) - {"query_closed"},
            "paper's features (no lengths)": set(PAPER_FEATURES),
        }[name]
        assert used == expected, name
        score_fns[name] = featurised_score_fn(featurizer, scorer)
    table_ = compare_scores(table, "ref", CHANGES, score_fns, samples_per_query=6, n_runs=100)
    assert set(table_.columns.get_level_values(0)) == set(score_fns) and set(table_.columns.get_level_values(1)) == {
        "p",
        "power",
    }
    for name in score_fns:
        assert table_.loc["b", (name, "p")] < 0.05 and table_.loc["b", (name, "power")] > 0.8, name
