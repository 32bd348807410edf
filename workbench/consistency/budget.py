"""How many queries a SimCT study asks: a pilot, the planner's power curves, and the budget chosen.

A study must be able to *see* the changes it cares about. The pilot runs every variant on a
small, stratified slice of the query pool; the pilot's pair scores of each target change (say,
the fine-tuned stage, or temperature 0.7 -> 1.0) give its effect size and an empirical power
curve over query counts (queries resampled with replacement, so counts beyond the pilot's are
simulated). :func:`plan_budget` then picks the smallest query count at which *every* target
reaches the wanted power, and never fewer than ``min_queries``; :func:`stratified_head` takes
that many queries from the pool, keeping the pool's mix of query types and sources, so the pilot
is a prefix of the final set and none of its responses is generated twice.

>>> pool = pd.DataFrame({"query_id": [f"q{i}" for i in range(8)], "source": list("aaaabbcc")})
>>> stratified_head(pool, 4).source.tolist()
['a', 'b', 'c', 'a']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.consistency.power import ScoreCube, pilot_effect_size, power_curve, queries_for_power


def stratified_head(queries: pd.DataFrame, n: int, by: str = "source") -> pd.DataFrame:
    """The first ``n`` queries taken round-robin over the groups of column ``by`` (pool order kept within a group).

    Any ``n`` gives a prefix of any larger ``n``'s set, and every group keeps its share (up to
    rounding) until it runs out.

    Args:
        queries: the pool (e.g. :func:`workbench.consistency.generate.build_queries`).
        n: queries wanted (at most the pool's size).
        by: the column whose groups alternate.

    Returns:
        ``n`` rows of ``queries``, in round-robin order.
    """
    if not 0 < n <= len(queries):
        raise ValueError(f"need 0 < n <= {len(queries)} queries in the pool, got {n}")
    rank = queries.groupby(by, sort=False).cumcount()
    group_order = {group: i for i, group in enumerate(dict.fromkeys(queries[by]))}
    order = np.lexsort((queries[by].map(group_order).to_numpy(), rank.to_numpy()))
    return queries.iloc[order[:n]].reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    """The query budget of a study, planned on a pilot.

    Attributes:
        n_queries: the budget chosen: the smallest grid count at which every target's simulated
            power reaches ``power``, and at least ``min_queries``; ``max(grid)`` when some target
            never does (``reached`` is then False).
        reached: whether every target reaches ``power`` within the grid.
        power, alpha, samples_per_query, min_queries: the plan's inputs.
        targets: one row per target change: pilot queries, effect size d_z, queries needed by the
            t-test formula and by simulation (NaN: not within the grid), power at the budget.
        curves: the simulated power curves, one row per (target, n_queries).
    """

    n_queries: int
    reached: bool
    power: float
    alpha: float
    samples_per_query: int
    min_queries: int
    targets: pd.DataFrame
    curves: pd.DataFrame = dataclasses.field(repr=False)


def plan_budget(
    cubes: Mapping[str, ScoreCube],
    n_queries_grid: Sequence[int],
    power: float = 0.8,
    alpha: float = 0.05,
    samples_per_query: int | None = None,
    min_queries: int = 0,
    n_runs: int = 500,
    seed: int = 0,
) -> BudgetPlan:
    """Plans the number of queries so that SimCT has ``power`` against every target change.

    Args:
        cubes: target name -> pilot pair scores of the reference against that change.
        n_queries_grid: query counts to simulate (the budget is one of them).
        power: wanted power against each target.
        alpha: significance level.
        samples_per_query: responses per stage and query (default: all in each cube).
        min_queries: a floor on the budget (e.g. for coverage of query types).
        n_runs: simulated runs per grid point.
        seed: seeds the simulations.

    Returns:
        The :class:`BudgetPlan`.
    """
    if not cubes:
        raise ValueError("plan_budget needs at least one target cube")
    grid = sorted(set(int(n) for n in n_queries_grid))
    rows, curves = [], []
    for name, cube in cubes.items():
        k = samples_per_query or min(cube.within.shape[1], cube.across.shape[2])
        effect = pilot_effect_size(cube, k, seed=seed)
        try:
            formula = queries_for_power(effect, power, alpha)
        except ValueError:  # no drop in consistency (d_z <= 0) or beyond any budget
            formula = np.nan
        curve = power_curve(cube, grid, k, n_runs, alpha, seed).assign(target=name)
        reached = curve[curve.rate >= power].n_queries
        rows.append(
            {
                "target": name,
                "pilot_queries": len(cube.query_ids),
                "samples_per_query": k,
                "effect_dz": effect,
                "n_formula": formula,
                "n_simulated": float(reached.min()) if len(reached) else np.nan,
            }
        )
        curves.append(curve)
    targets, curves = pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
    needed = targets.n_simulated.max() if targets.n_simulated.notna().all() else np.nan
    reached = bool(np.isfinite(needed))
    floor = [n for n in grid if n >= min_queries]
    if not floor:
        raise ValueError(f"no grid count reaches min_queries={min_queries}: {grid}")
    n_queries = max(int(needed), floor[0]) if reached else grid[-1]
    n_queries = min(n for n in grid if n >= n_queries)
    at_budget = curves[curves.n_queries == n_queries].set_index("target").rate
    targets["power_at_budget"] = targets.target.map(at_budget)
    return BudgetPlan(
        n_queries, reached, power, alpha, int(targets.samples_per_query.min()), min_queries, targets, curves
    )


def plan_score_and_budget(
    cubes: Mapping[str, Mapping[str, ScoreCube]],
    n_queries_grid: Sequence[int],
    power: float = 0.8,
    alpha: float = 0.05,
    samples_per_query: int | None = None,
    min_queries: int = 0,
    n_runs: int = 500,
    seed: int = 0,
) -> tuple[str, dict[str, BudgetPlan]]:
    """Plans the budget for each candidate pair score and picks the score that needs the fewest queries.

    The model-wise test takes any pair score; which one sees the target changes best is an
    empirical question the pilot can answer. A score reaches the plan when every target gets
    ``power`` within the grid; among those, the smallest budget wins, ties going to the earlier
    score in ``cubes`` (list the paper's classifier first). When no score reaches it, the one with
    the highest worst-target power at the largest grid count is chosen.

    Args:
        cubes: score name -> target name -> pilot score cube (the same targets for every score).
        n_queries_grid, power, alpha, samples_per_query, min_queries, n_runs, seed: as for :func:`plan_budget`.

    Returns:
        (the chosen score's name, score name -> its :class:`BudgetPlan`).
    """
    plans = {
        name: plan_budget(targets, n_queries_grid, power, alpha, samples_per_query, min_queries, n_runs, seed)
        for name, targets in cubes.items()
    }
    reached = [name for name, plan in plans.items() if plan.reached]
    if reached:
        return min(reached, key=lambda name: (plans[name].n_queries, list(plans).index(name))), plans
    top = max(n_queries_grid)
    worst = {name: plan.curves[plan.curves.n_queries == top].rate.min() for name, plan in plans.items()}
    return max(plans, key=lambda name: (worst[name], -list(plans).index(name))), plans
