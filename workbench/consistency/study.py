"""A SimCT study of several lifecycle changes against one reference.

Given a response table with a reference stage, the changes to test and controls (A/A, served),
this module

* runs SimCT's model-wise test, its power curve and the MMD baseline's at the same budget (same
  queries, same samples per query) for each change (:func:`analyse_change`);
* compares pair scores (classifier labellings, single features) in the model-wise test
  (:func:`compare_scores`);
* pools stages for A/A false-alarm runs (:func:`pool_stages`);
* summarises everything in one table (:func:`decision_table`) in which no change is called
  consistent without the power the test had: the minimum detectable effect at this budget and
  the empirical power against a comparable change that *was* detected.

The pair scores come from :mod:`~workbench.consistency.crossfit` (classifiers that never score a
stage they were trained on); plots live in :mod:`~workbench.consistency.plots`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from workbench.consistency.mmd_baseline import MMDConfig, MMDResult, mmd_permutation_test, mmd_power_curve, token_cube
from workbench.consistency.power import ScoreCube, minimum_detectable_effect, power_curve, score_cube
from workbench.consistency.simct import ModelWiseResult, paired_consistency_t_test


@dataclasses.dataclass(frozen=True)
class Change:
    """One comparison against the reference.

    Attributes:
        stage: the stage (variant name) under test.
        description: what changed, for tables and plots.
        fold: the cross-fitting fold whose classifier trains on this change; None for controls,
            which no classifier trains on.
        control: no real change (A/A, served vs local): its rejection rate is a false alarm rate.
    """

    stage: str
    description: str
    fold: int | None = None
    control: bool = False


def model_wise_from_cube(cube: ScoreCube, alpha: float = 0.05) -> ModelWiseResult:
    """SimCT's model-wise test on all queries and responses of a score cube."""
    within = np.nanmean(cube.within, axis=(1, 2))
    across = cube.across.mean(axis=(1, 2))
    return paired_consistency_t_test(within, across, alpha, cube.stage_a, cube.stage_b)


def pair_auc(cube: ScoreCube) -> float:
    """AUC of the pair scores at telling within-reference pairs (positive) from cross pairs."""
    i, j = np.triu_indices(cube.within.shape[1], k=1)
    within, across = cube.within[:, i, j].ravel(), cube.across.ravel()
    labels = np.r_[np.ones(len(within)), np.zeros(len(across))]
    return float(roc_auc_score(labels, np.r_[within, across]))


@dataclasses.dataclass
class ChangeResult:
    """Everything measured for one change.

    Attributes:
        change: what was tested.
        simct: SimCT's model-wise test on all queries and samples.
        mmd: the MMD baseline's test at the same budget.
        simct_curve, mmd_curve: rejection rates against the number of queries (the
            :class:`~workbench.consistency.power.RejectionRate` columns).
        pair_auc: how well single pair scores separate within-reference from cross pairs.
        per_query: per-query mean scores (columns ``within``, ``across``).
    """

    change: Change
    simct: ModelWiseResult
    mmd: MMDResult
    simct_curve: pd.DataFrame
    mmd_curve: pd.DataFrame
    pair_auc: float
    per_query: pd.DataFrame


def analyse_change(
    table: pd.DataFrame,
    reference: str,
    change: Change,
    score_fn: Callable[[pd.DataFrame], np.ndarray],
    n_queries_grid: Sequence[int],
    samples_per_query: int,
    mmd_config: MMDConfig,
    simct_runs: int = 500,
    mmd_runs: int = 50,
    alpha: float = 0.05,
    seed: int = 0,
) -> ChangeResult:
    """Model-wise tests and power curves of SimCT and of the MMD baseline for one change.

    Both tests see the same queries and the same ``samples_per_query`` responses per stage and
    query, and their power curves resample queries the same way (with replacement).

    Args:
        table: the response table.
        reference: the reference stage.
        change: the change under test.
        score_fn: pairs -> consistency scores (e.g. featurise, then :meth:`CrossFitScorer.predict`).
        n_queries_grid: query counts of the power curves.
        samples_per_query: responses per stage and query (k).
        mmd_config: the baseline's settings.
        simct_runs, mmd_runs: simulated runs per grid point.
        alpha: significance level.
        seed: seeds all resampling.
    """
    cube = score_cube(table, reference, change.stage, score_fn, samples_per_query)
    tokens = token_cube(table, reference, change.stage, mmd_config, samples_per_query)
    simct = model_wise_from_cube(cube, alpha)
    mmd = mmd_permutation_test(tokens.tokens_a, tokens.tokens_b, mmd_config, seed)
    simct_curve = power_curve(cube, n_queries_grid, samples_per_query, simct_runs, alpha, seed)
    mmd_curve = mmd_power_curve(tokens, n_queries_grid, samples_per_query, mmd_runs, alpha, mmd_config, seed)
    per_query = pd.DataFrame(
        {"within": np.nanmean(cube.within, axis=(1, 2)), "across": cube.across.mean(axis=(1, 2))},
        index=pd.Index(cube.query_ids, name="query_id"),
    )
    return ChangeResult(change, simct, mmd, simct_curve, mmd_curve, pair_auc(cube), per_query)


def compare_scores(
    table: pd.DataFrame,
    reference: str,
    changes: Sequence[Change],
    score_fns: Mapping[str, Callable[[pd.DataFrame], np.ndarray]],
    samples_per_query: int,
    n_runs: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """The model-wise test with several pair scores: p-value and power on all queries, per change.

    The t-test accepts any per-pair score, so the same responses can be judged with the trained
    classifier under different labellings or with a single feature such as ``cosine``.

    Returns:
        One row per change; columns ``(score name, "p")`` and ``(score name, "power")``.
    """
    rows = {}
    for change in changes:
        row = {}
        for name, score_fn in score_fns.items():
            cube = score_cube(table, reference, change.stage, score_fn, samples_per_query)
            curve = power_curve(cube, [len(cube.query_ids)], samples_per_query, n_runs, alpha, seed)
            row[(name, "p")] = model_wise_from_cube(cube, alpha).p_value
            row[(name, "power")] = float(curve.rate.iloc[0])
        rows[change.stage] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("change")


def pool_stages(table: pd.DataFrame, stages: Sequence[str], name: str) -> pd.DataFrame:
    """The responses of several stages as one stage ``name`` (seeds become ``"<stage>:<seed>"``).

    Pooling the reference with a rerun under new seeds gives a stage with twice the samples,
    which :func:`~workbench.consistency.power.aa_false_alarm_rate` splits at random.
    """
    rows = table[table.stage.isin(stages)]
    pooled = rows.assign(stage=name, seed=rows.stage + ":" + rows.seed.astype(str))
    return pooled.sort_values("query_id", kind="stable").reset_index(drop=True)


def _rate_at(curve: pd.DataFrame, n: int) -> float:
    return float(curve.set_index("n_queries").rate.get(n, np.nan))


def _queries_for(curve: pd.DataFrame, power: float) -> float:
    reached = curve[curve.rate >= power].n_queries
    return float(reached.min()) if len(reached) else np.nan


def decision_table(
    results: Sequence[ChangeResult], alpha: float = 0.05, power: float = 0.8, margin: float = 0.1
) -> pd.DataFrame:
    """One row per change: decisions, p-values, power, and which test is more powerful.

    Columns:
        ``decision``: ``"different"`` when SimCT rejects at ``alpha``; otherwise
        ``"consistent"`` when the test had at least ``power`` against the comparable change,
        else ``"consistent (underpowered)"``: not rejecting is only evidence of consistency
        when the test could have seen a change.
        ``mde_dz``: the smallest effect size d_z detectable with ``power`` at this number of queries.
        ``comparable``: the detected (rejected) real change with the smallest effect size, and
        ``power_vs_comparable`` SimCT's empirical power against it at this number of queries.
        ``simct_power`` / ``mmd_power``: rejection rates at this number of queries (false
        alarm rates for controls); ``simct_n80`` / ``mmd_n80``: smallest grid size reaching ``power``.
        ``more_powerful``: the test whose power curve is higher on average by more than
        ``margin`` (``"similar"`` otherwise; ``"n/a (control)"`` for controls).
    """
    detected = [r for r in results if r.simct.reject and not r.change.control and np.isfinite(r.simct.effect_size)]
    comparable = min(detected, key=lambda r: r.simct.effect_size) if detected else None
    rows = []
    for r in results:
        n = r.simct.n_queries
        power_vs = _rate_at(comparable.simct_curve, n) if comparable is not None else np.nan
        if r.simct.reject:
            decision = "different"
        else:
            decision = "consistent" if power_vs >= power else "consistent (underpowered)"
        gap = r.simct_curve.rate.mean() - r.mmd_curve.rate.mean()
        winner = (
            "n/a (control)"
            if r.change.control
            else ("similar" if abs(gap) <= margin else ("SimCT" if gap > 0 else "MMD"))
        )
        rows.append(
            {
                "change": r.change.stage,
                "description": r.change.description,
                "control": r.change.control,
                "n_queries": n,
                "samples_per_query": r.mmd.samples_per_query,
                "simct_p": r.simct.p_value,
                "mmd_p": r.mmd.p_value,
                "decision": decision,
                "mmd_decision": "different" if r.mmd.p_value < alpha else "consistent",
                "effect_dz": r.simct.effect_size,
                "mean_drop": r.simct.mean_difference,
                "pair_auc": r.pair_auc,
                "mde_dz": minimum_detectable_effect(n, alpha, power),
                "comparable": comparable.change.stage if comparable is not None else "",
                "power_vs_comparable": power_vs,
                "simct_power": _rate_at(r.simct_curve, n),
                "mmd_power": _rate_at(r.mmd_curve, n),
                "simct_n80": _queries_for(r.simct_curve, power),
                "mmd_n80": _queries_for(r.mmd_curve, power),
                "more_powerful": winner,
            }
        )
    return pd.DataFrame(rows)
