"""Every consistency method of notebook 06 on the same responses: decision, power over budgets, A/A false alarms.

The methods, each under the name of what it computes (:data:`METHODS`):

* ``simct-paper``: SimCT as published: the LightGBM response-wise classifier trained with the paper's labelling
  (within-stage pairs of both stages consistent) on the paper's features, then the model-wise paired t-test;
* ``simct-variant``: the same with this project's labelling (only the reference's within pairs consistent) and
  all features, lengths included;
* ``cosine``: the model-wise t-test on the MiniLM cosine of each pair (no classifier);
* ``mmd``: the MMD two-sample test of "Model Equality Testing" (Hamming kernel on tokens, permutation null);
* ``logprob``: the log-likelihood-ratio test of :mod:`~workbench.consistency.logprob` (local stages only).

All but ``mmd`` reduce a comparison to per-query differences (positive: the stages differ), so they share the
one-sided t-test, the three-way decision at a d_z margin (:mod:`~workbench.consistency.equivalence`), the
simulated power over (queries x samples per query) and the split-half A/A runs. ``mmd`` has a permutation
p-value and no equivalence test: its decision is ``different`` or ``inconclusive``.

A/A runs: the comparison's reference pooled with its rerun under new seeds, split at random into two halves
of k responses per query, scored as the comparison scores (for ``logprob``, with the ratio of this
comparison's two stages): their rejection rate is the method's false-alarm rate at that budget. Every stage
compared also gets an A/A run of its own: its k responses per query split into halves of k // 2 (no rerun of
it exists, so half the budget's samples), scored the same way; a stage whose own responses make a method
reject more often than alpha would say so there (``stage_b_false_alarm``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from workbench.consistency.equivalence import decide, decision_of
from workbench.consistency.logprob import RatioCube, query_differences, simulate_ratios
from workbench.consistency.power import ScoreCube, one_sided_paired_t, rejection_rate, simulate_differences
from workbench.consistency.study import pool_stages

METHODS = ("simct-paper", "simct-variant", "cosine", "mmd", "logprob")
DECISION_COLUMNS = (
    "change",
    "stage_a",
    "stage_b",
    "method",
    "n_queries",
    "samples_per_query",
    "p_value",
    "decision",
    "power",
    "false_alarm",
    "stage_b_false_alarm",
    "stage_b_aa_samples",
)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Stage A (the reference) against stage B.

    Attributes:
        change: the name in the results (B's variant name; fine-tuned stages start with ``finetuned-``).
        stage_a, stage_b: the variants compared.
        rerun: A's rerun under new seeds (pooled with A in the A/A runs).
        description: what changed.
        control: no real change (its rejections are false alarms).
    """

    change: str
    stage_a: str
    stage_b: str
    rerun: str
    description: str = ""
    control: bool = False


@dataclasses.dataclass
class Paired:
    """A method that reduces a comparison to per-query differences, with its resampling.

    Attributes:
        differences: (Q,) per-query differences on every query and sample.
        simulate: (n_queries, k, n_runs, seed, aa) -> (first, second) per-query means, each (n_runs, n_queries);
            the test is ``first > second``.
        min_samples: the fewest samples per query a run can use (2 for pair scores: within pairs need two).
        max_samples: the most samples per query of a power run; ``max_aa_samples`` of an A/A run.
    """

    differences: np.ndarray
    simulate: Callable[..., tuple[np.ndarray, np.ndarray]]
    min_samples: int
    max_samples: int
    max_aa_samples: int


def pair_score_method(cube: ScoreCube, aa_cube: ScoreCube) -> Paired:
    """A pair-score method (SimCT's model-wise test) from the comparison's cube and the pooled reference's."""

    def simulate(n, k, runs, seed, aa=False):
        return simulate_differences(aa_cube if aa else cube, n, k, runs, seed, aa=aa)

    within, across = np.nanmean(cube.within, axis=(1, 2)), cube.across.mean(axis=(1, 2))
    max_samples = min(cube.within.shape[1], cube.across.shape[2])
    return Paired(within - across, simulate, 2, max_samples, aa_cube.within.shape[1] // 2)


def stage_b_pair_score_aa(cube_b: ScoreCube) -> Paired:
    """A/A runs on one stage's own responses (a B-only cube): disjoint halves of its samples per query."""
    return Paired(
        np.array([]),
        lambda n, k, runs, seed, aa=True: simulate_differences(cube_b, n, k, runs, seed, aa=True),
        2,
        0,
        cube_b.within.shape[1] // 2,
    )


def stage_b_ratio_aa(cube: RatioCube) -> Paired:
    """A/A runs of the log-probability test on stage B's own ratios ``f(b)``: disjoint halves of B's samples."""
    own = RatioCube(cube.query_ids, cube.fb, cube.fb, cube.stage_b, cube.stage_b)
    return Paired(
        np.array([]),
        lambda n, k, runs, seed, aa=True: simulate_ratios(own, n, k, runs, seed, aa=True),
        1,
        0,
        cube.fb.shape[1] // 2,
    )


def ratio_method(cube: RatioCube) -> Paired:
    """The log-probability test from its ratio cube (with the rerun's ratios for the A/A runs)."""
    pooled = cube.fa.shape[1] + (cube.fa_rerun.shape[1] if cube.fa_rerun is not None else 0)
    return Paired(
        query_differences(cube),
        lambda n, k, runs, seed, aa=False: simulate_ratios(cube, n, k, runs, seed, aa=aa),
        1,
        min(cube.fa.shape[1], cube.fb.shape[1]),
        pooled // 2,
    )


def rejection(method: Paired, n: int, k: int, runs: int, alpha: float, seed, aa: bool = False) -> dict:
    """The rejection rate (with its Clopper-Pearson interval) of simulated runs at ``n`` queries x ``k`` samples."""
    first, second = method.simulate(n, k, runs, seed, aa=aa)
    return dataclasses.asdict(rejection_rate(one_sided_paired_t(first, second)[1], alpha, n, k))


def paired_rows(
    comparison: Comparison,
    method_name: str,
    method: Paired,
    k: int,
    margin_dz: float,
    runs: int,
    aa_runs: int,
    alpha: float = 0.05,
    seed: int = 0,
    stage_b_aa: Paired | None = None,
) -> dict:
    """One row of the decisions (the :data:`DECISION_COLUMNS` plus the details) for a paired method.

    ``stage_b_aa`` (:func:`stage_b_pair_score_aa`, :func:`stage_b_ratio_aa`): stage B's own A/A runs, at the
    most samples per query its halves hold.
    """
    result = decide(method.differences, margin_dz, alpha)
    n = result.n_queries
    power = rejection(method, n, k, runs, alpha, (seed, 1))
    false_alarm = rejection(method, n, k, aa_runs, alpha, (seed, 2), aa=True) if k <= method.max_aa_samples else {}
    own_k = min(k, stage_b_aa.max_aa_samples) if stage_b_aa is not None else 0
    own = rejection(stage_b_aa, n, own_k, aa_runs, alpha, (seed, 5), aa=True) if own_k >= method.min_samples else {}
    return {
        "change": comparison.change,
        "stage_a": comparison.stage_a,
        "stage_b": comparison.stage_b,
        "method": method_name,
        "n_queries": n,
        "samples_per_query": k,
        "p_value": result.p_value,
        "decision": result.decision,
        "power": power["rate"],
        "false_alarm": false_alarm.get("rate", np.nan),
        "stage_b_false_alarm": own.get("rate", np.nan),
        "stage_b_aa_samples": own_k if own else np.nan,
        "tost_p": result.tost_p,
        "effect_dz": result.effect_dz,
        "margin_dz": margin_dz,
        "false_alarm_low": false_alarm.get("ci_low", np.nan),
        "false_alarm_high": false_alarm.get("ci_high", np.nan),
        "stage_b_false_alarm_low": own.get("ci_low", np.nan),
        "stage_b_false_alarm_high": own.get("ci_high", np.nan),
        "description": comparison.description,
        "control": comparison.control,
    }


def paired_grid(
    method: Paired,
    n_grid: Sequence[int],
    k_grid: Sequence[int],
    runs: int,
    aa_runs: int,
    alpha: float,
    seed: int = 0,
    kinds: Sequence[str] = ("power", "false alarm"),
) -> pd.DataFrame:
    """Power and A/A false-alarm rate over queries x samples per query (the points the responses allow).

    ``kinds`` picks either: a pair score's A/A runs depend only on the reference and the score, so a study
    measures them once per reference and score rather than once per comparison.
    """
    rows = []
    for point, (k, n) in enumerate((k, n) for k in k_grid for n in n_grid):
        if "power" in kinds and method.min_samples <= k <= method.max_samples:
            rows.append({"kind": "power", **rejection(method, n, k, runs, alpha, (seed, 3, point))})
        if "false alarm" in kinds and method.min_samples <= k <= method.max_aa_samples:
            rows.append({"kind": "false alarm", **rejection(method, n, k, aa_runs, alpha, (seed, 4, point), aa=True)})
    return pd.DataFrame(rows)


def mmd_rows(
    comparison: Comparison,
    table: pd.DataFrame,
    config,
    k: int,
    n_grid: Sequence[int],
    k_grid: Sequence[int],
    runs: int,
    alpha: float = 0.05,
    seed: int = 0,
    aa_cache: dict | None = None,
) -> tuple[dict, pd.DataFrame]:
    """The MMD baseline's decision row (``different`` or ``inconclusive``) and its power / A/A grid.

    The A/A runs depend only on the pooled reference: with ``aa_cache`` (a dict kept across calls) they run once
    per reference. Stage B's own A/A runs (halves of its ``k`` responses) run at the budget only.
    """
    from workbench.consistency.mmd_baseline import (
        mmd_aa_false_alarm_rate,
        mmd_permutation_test,
        mmd_power_curve,
        stage_tokens,
        token_cube,
    )

    cube = token_cube(table, comparison.stage_a, comparison.stage_b, config, k)
    n = len(cube.query_ids)
    ks = [kk for kk in k_grid if 1 <= kk <= cube.tokens_a.shape[1]]
    aa_cache = {} if aa_cache is None else aa_cache
    key = (comparison.stage_a, comparison.rerun)
    if key not in aa_cache:
        pooled = stage_tokens(pool_stages(table, [comparison.stage_a, comparison.rerun], "pooled"), "pooled", config)
        aa = [
            {
                "kind": "false alarm",
                **dataclasses.asdict(mmd_aa_false_alarm_rate(pooled, m, kk, runs, alpha, config, seed)),
            }
            for kk in ks
            if 2 * kk <= pooled.shape[1]
            for m in n_grid
        ]
        aa_cache[key] = (mmd_aa_false_alarm_rate(pooled, n, k, runs, alpha, config, seed), pd.DataFrame(aa))
    false_alarm, aa_grid = aa_cache[key]
    own_k = cube.tokens_b.shape[1] // 2  # stage B's own A/A: halves of the responses the cube already tokenised
    own = mmd_aa_false_alarm_rate(cube.tokens_b, n, own_k, runs, alpha, config, seed) if own_k >= 1 else None
    p_value = mmd_permutation_test(cube.tokens_a, cube.tokens_b, config, seed).p_value
    power = mmd_power_curve(cube, [n], k, runs, alpha, config, seed).rate.iloc[0]
    row = {
        "change": comparison.change,
        "stage_a": comparison.stage_a,
        "stage_b": comparison.stage_b,
        "method": "mmd",
        "n_queries": n,
        "samples_per_query": k,
        "p_value": p_value,
        "decision": decision_of(p_value, 1.0, alpha),  # no equivalence test: never "equivalent"
        "power": power,
        "false_alarm": false_alarm.rate,
        "stage_b_false_alarm": own.rate if own else np.nan,
        "stage_b_aa_samples": own_k if own else np.nan,
        "tost_p": np.nan,
        "effect_dz": np.nan,
        "margin_dz": np.nan,
        "false_alarm_low": false_alarm.ci_low,
        "false_alarm_high": false_alarm.ci_high,
        "stage_b_false_alarm_low": own.ci_low if own else np.nan,
        "stage_b_false_alarm_high": own.ci_high if own else np.nan,
        "description": comparison.description,
        "control": comparison.control,
    }
    grid = mmd_power_curve(cube, n_grid, ks, runs, alpha, config, seed).assign(kind="power")
    return row, pd.concat([grid, aa_grid], ignore_index=True)


def best_methods(decisions: pd.DataFrame) -> pd.DataFrame:
    """Per real change (in the table's order), the method with the highest power at the budget (ties: the order of
    :data:`METHODS`)."""
    real = decisions[~decisions.control.astype(bool)]
    first = {change: i for i, change in enumerate(dict.fromkeys(real.change))}
    real = real.assign(order=real.method.map(METHODS.index), first=real.change.map(first))
    best = real.sort_values(["first", "power", "order"], ascending=[True, False, True]).groupby("change").head(1)
    return best.drop(columns=["order", "first"]).reset_index(drop=True)


def decision_columns(details: pd.DataFrame) -> pd.DataFrame:
    """The long decision table with exactly the :data:`DECISION_COLUMNS` (the schema of ``06_decisions.csv``)."""
    return details[list(DECISION_COLUMNS)].reset_index(drop=True)
