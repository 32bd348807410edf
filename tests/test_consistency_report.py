"""The study helpers (workbench.consistency.study, .crossfit, .methods, .plots) on synthetic stages with a known truth.

ref, train-ref and aa draw from the same generator (shift 0); b and c are real changes. The
classifiers train on train-ref vs b (fold 0) and train-ref vs c (fold 1); ref is never trained on.
"""

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
from workbench.consistency.methods import Comparison, mmd_rows, pair_score_method, paired_grid, paired_rows
from workbench.consistency.mmd_baseline import MMDConfig, mmd_aa_false_alarm_rate, stage_tokens
from workbench.consistency.plots import plot_decisions, plot_method_power, plot_samples_grid
from workbench.consistency.power import minimum_detectable_effect, score_cube, t_test_power
from workbench.consistency.responses import synthetic_responses
from workbench.consistency.simct import StageOverlapError
from workbench.consistency.study import Change, pool_stages

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


def _classifier_method(table, featurizer, scorer, stage):
    score_fn = featurised_score_fn(featurizer, scorer)
    aa_cube = score_cube(pool_stages(table, ["ref", "aa"], "pooled"), "pooled", None, score_fn)
    return pair_score_method(score_cube(table, "ref", stage, score_fn, 6), aa_cube)


def test_analysis_detects_the_change_and_not_the_control(table, featurizer, scorer):
    rows, grids = [], []
    for change in CHANGES:
        comparison = Comparison(change.stage, "ref", change.stage, "aa", change.description, change.control)
        method = _classifier_method(table, featurizer, scorer, change.stage)
        rows.append(paired_rows(comparison, "simct-variant", method, 6, 0.8, 100, 200, seed=0))
        grids.append(paired_grid(method, [8, 16], [2, 6], 50, 100, 0.05).assign(change=change.stage))
        row, grid = mmd_rows(comparison, table, MMD, 6, [8, 16], [6], 4)
        rows.append(row)
        grids.append(grid.assign(change=change.stage, method="mmd"))
    details = pd.DataFrame(rows)
    simct = details[details.method == "simct-variant"].set_index("change")
    assert simct.loc["b", "decision"] == "different" and simct.loc["b", "p_value"] < 1e-3
    assert simct.loc["b", "power"] > 0.9 and simct.loc["aa", "decision"] != "different"
    assert 0 <= simct.loc["aa", "false_alarm"] <= 0.15
    grid = pd.concat(grids, ignore_index=True).assign(method=lambda g: g.method.fillna("simct-variant"))
    assert set(grid[grid.change == "b"].n_queries) == {8, 16}
    import matplotlib.pyplot as plt

    ax = plot_method_power(plt.subplots()[1], grid[grid.change == "b"], 6, "power")
    assert len(ax.get_lines()) == 3  # simct-variant, mmd, alpha
    ax = plot_samples_grid(plt.subplots()[1], grid[(grid.change == "b") & (grid.method == "simct-variant")])
    assert len(ax.get_lines()) == 3  # k = 2, k = 6, alpha
    ax = plot_decisions(plt.subplots()[1], details)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["aa", "b", "c"] and len(ax.texts) == 6
    plt.close("all")


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
    for name, score_fn in score_fns.items():
        aa_cube = score_cube(pool_stages(table, ["ref", "aa"], "pooled"), "pooled", None, score_fn)
        method = pair_score_method(score_cube(table, "ref", "b", score_fn, 6), aa_cube)
        row = paired_rows(Comparison("b", "ref", "b", "aa"), name, method, 6, 0.8, 100, 2, seed=0)
        assert row["p_value"] < 0.05 and row["power"] > 0.8 and row["decision"] == "different", name
