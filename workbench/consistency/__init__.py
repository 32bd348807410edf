"""SimCT: do two stages of an LLM's lifecycle behave the same, judged from responses alone?

Implements "A Simple Consistency Test Protocol in LLMs Development Lifecycle" (Zhao, Jin, Huang,
Zhao, Tan; arXiv 2407.17150), with power analysis (false alarms, power, query planning) and the
MMD baseline of "Model Equality Testing" (Gao, Liang, Guestrin, ICLR 2025). A typical session::

    table = load_responses(["fp32.jsonl", "bf16.jsonl", "dev_a.jsonl", "dev_b.jsonl"])
    featurizer = PairFeaturizer()
    train = featurizer.transform(labelled_pairs(table, [("dev_a", "dev_b")]))
    test = ResponseWiseTest().fit(train, train_stage_pairs=[("dev_a", "dev_b")])
    pairs = featurizer.transform(labelled_pairs(table, [("fp32", "bf16")]))
    test.evaluate(pairs)                                        # response-wise accuracy/F1/AUC
    model_wise_test(pairs.assign(score=test.predict_proba(pairs)), "fp32", "bf16")

Modules: :mod:`~workbench.consistency.responses` (table format, pairs),
:mod:`~workbench.consistency.generate` (responses of lifecycle stages),
:mod:`~workbench.consistency.features` (pair features), :mod:`~workbench.consistency.simct`
(the two tests), :mod:`~workbench.consistency.power` (false alarms, power, planning),
:mod:`~workbench.consistency.budget` (the query budget planned on a pilot),
:mod:`~workbench.consistency.pairset` (the response-wise classifier against similarity thresholds),
:mod:`~workbench.consistency.mmd_baseline` (the MMD baseline), :mod:`~workbench.consistency.crossfit`
(classifiers that never score a stage they saw), :mod:`~workbench.consistency.logprob` (the log-likelihood-ratio
test), :mod:`~workbench.consistency.equivalence` (three-way decisions at a margin),
:mod:`~workbench.consistency.methods` (every method on the same responses: decisions, power and A/A grids),
:mod:`~workbench.consistency.study` (changes, pooled references), :mod:`~workbench.consistency.lifecycle`
(notebook 06's study), :mod:`~workbench.consistency.plots`.
"""

import importlib

from workbench.consistency.features import (
    FEATURE_NAMES,
    PAPER_FEATURES,
    FeatureConfig,
    PairFeaturizer,
    default_encoder_path,
    load_encoder,
    meteor_no_wordnet,
    tokenize,
)
from workbench.consistency.power import (
    QueryPlan,
    RejectionRate,
    ScoreCube,
    aa_false_alarm_rate,
    pilot_effect_size,
    plan_queries,
    power_curve,
    queries_for_power,
    rejection_rate,
    score_cube,
    simulate_differences,
    t_test_power,
)
from workbench.consistency.responses import (
    PAIR_COLUMNS,
    QUERY_TYPES,
    RESPONSE_FIELDS,
    ResponseFormatError,
    labelled_pairs,
    load_responses,
    make_pairs,
    save_responses,
    synthetic_responses,
    validate_responses,
)
from workbench.consistency.simct import (
    ModelWiseResult,
    ResponseWiseConfig,
    ResponseWiseMetrics,
    ResponseWiseTest,
    StageOverlapError,
    model_wise_test,
    one_sided_paired_t,
    paired_consistency_t_test,
    per_query_scores,
    query_type_ablation,
)

__all__ = [
    "FEATURE_NAMES",
    "PAIR_COLUMNS",
    "PAPER_FEATURES",
    "QUERY_TYPES",
    "RESPONSE_FIELDS",
    "FeatureConfig",
    "MMDConfig",
    "MMDResult",
    "ModelWiseResult",
    "PairFeaturizer",
    "QueryPlan",
    "RejectionRate",
    "ResponseFormatError",
    "ResponseWiseConfig",
    "ResponseWiseMetrics",
    "ResponseWiseTest",
    "ScoreCube",
    "StageOverlapError",
    "TokenCube",
    "aa_false_alarm_rate",
    "default_encoder_path",
    "encode_responses",
    "labelled_pairs",
    "load_encoder",
    "load_responses",
    "make_pairs",
    "meteor_no_wordnet",
    "mmd_permutation_test",
    "mmd_power_curve",
    "mmd_test",
    "model_wise_test",
    "one_sided_paired_t",
    "paired_consistency_t_test",
    "per_query_scores",
    "pilot_effect_size",
    "plan_queries",
    "power_curve",
    "queries_for_power",
    "query_type_ablation",
    "rejection_rate",
    "save_responses",
    "score_cube",
    "simulate_differences",
    "synthetic_responses",
    "t_test_power",
    "token_cube",
    "tokenize",
    "validate_responses",
]

# The MMD baseline pulls in torch and transformers (through model-equality-testing), seconds of
# import time: its names are loaded on first use.
_MMD_NAMES = (
    "MMDConfig",
    "MMDResult",
    "TokenCube",
    "encode_responses",
    "mmd_permutation_test",
    "mmd_power_curve",
    "mmd_test",
    "token_cube",
)


def __getattr__(name: str):
    if name in _MMD_NAMES:
        return getattr(importlib.import_module("workbench.consistency.mmd_baseline"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
