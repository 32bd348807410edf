"""Power analysis of SimCT's model-wise test: false alarms, power, and how many queries to ask.

Everything here resamples one precomputed :class:`ScoreCube`: the score of every response pair
of every query (within stage A, and across A and B), so a thousand simulated test runs cost a
thousand cheap array look-ups rather than a thousand rounds of feature extraction.

* :func:`aa_false_alarm_rate`: A/A runs. Each run splits every drawn query's A responses at
  random into two disjoint halves A1 and A2 (new seeds, same stage) and tests A1 against A2
  on resampled queries. The fraction of rejections should be close to alpha; it comes with a
  Clopper-Pearson interval. (A stage A' rerun with the same settings can also be used directly:
  ``power_curve(score_cube(table, "A", "A'", ...))`` is then a false alarm rate.)
* :func:`power_curve`: the rejection rate against a real change B as a function of the number of
  queries and of samples per query, drawing queries with replacement (the pilot's queries stand
  in for the population, so larger query sets than the pilot can be simulated).
* :func:`queries_for_power` / :func:`plan_queries`: the number of queries needed for a target
  power at alpha, from the t-test power formula (noncentral t) with the pilot's effect size,
  and optionally checked against the empirical power curve.

>>> queries_for_power(effect_size=0.5, power=0.8, alpha=0.05)
27
>>> round(float(t_test_power(0.5, 27, alpha=0.05)), 3)
0.812
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from workbench.consistency.responses import PAIR_COLUMNS
from workbench.consistency.simct import one_sided_paired_t

ScoreFunction = Callable[[pd.DataFrame], np.ndarray]


@dataclasses.dataclass(frozen=True)
class ScoreCube:
    """Scores of all response pairs of each query, for resampling.

    Attributes:
        query_ids: (Q,) query ids, the first axis of the arrays.
        within: (Q, n_a, n_a) scores of ``(A_i, A_j)``; symmetric, NaN on the diagonal.
        across: (Q, n_a, n_b) scores of ``(A_i, B_j)``, or None for an A-only cube.
        stage_a, stage_b: the stages (``stage_b`` None for an A-only cube).
    """

    query_ids: tuple[str, ...]
    within: np.ndarray
    across: np.ndarray | None
    stage_a: str
    stage_b: str | None = None


def _stage_responses(table: pd.DataFrame, stage: str, query_ids: Sequence[str], n_samples: int) -> pd.DataFrame:
    """The first ``n_samples`` responses (table order) of each query, as a (Q * n_samples)-row frame."""
    rows = table[table.stage == stage].groupby("query_id", sort=False).head(n_samples)
    rows = rows.set_index("query_id").loc[list(query_ids)].reset_index()
    return rows


def score_cube(
    table: pd.DataFrame, stage_a: str, stage_b: str | None, score_fn: ScoreFunction, n_samples: int | None = None
) -> ScoreCube:
    """Scores every within-A pair and every A-B pair of every query once.

    Args:
        table: a response table.
        stage_a: the reference stage.
        stage_b: the stage under test, or None for an A-only cube (A/A calibration).
        score_fn: maps a pairs table (columns of
            :data:`~workbench.consistency.responses.PAIR_COLUMNS`) to an (n_pairs,) array, higher
            = more consistent; e.g. ``lambda p: test.predict_proba(featurizer.transform(p))``.
        n_samples: responses per query and stage to use (the first ones in table order);
            default: the smallest count over queries.

    Returns:
        The :class:`ScoreCube` over the queries present in both stages.
    """
    stages = [stage_a] if stage_b is None else [stage_a, stage_b]
    counts = table[table.stage.isin(stages)].groupby(["stage", "query_id"]).size().unstack("stage")
    complete = counts.dropna()
    if complete.empty:
        raise ValueError(f"no query has responses from all of {stages}")
    if len(complete) < len(counts):
        warnings.warn(
            f"{len(counts) - len(complete)} query(ies) lack responses from one of {stages} and are left out",
            stacklevel=2,
        )
    available = int(complete.values.min())
    n_samples = n_samples or available
    if n_samples > available or n_samples < 2:
        raise ValueError(
            f"need 2 <= n_samples <= {available} (the fewest responses of a query and stage), got {n_samples}"
        )
    query_ids = tuple(query for query in dict.fromkeys(table.query_id) if query in complete.index)
    q_count = len(query_ids)
    a = _stage_responses(table, stage_a, query_ids, n_samples)
    i, j = np.triu_indices(n_samples, k=1)
    index_pairs = [(i, j, a)]
    if stage_b is not None:
        b = _stage_responses(table, stage_b, query_ids, n_samples)
        i_all, j_all = np.meshgrid(np.arange(n_samples), np.arange(n_samples), indexing="ij")
        index_pairs.append((i_all.ravel(), j_all.ravel(), b))
    frames = []
    for rows, cols, second in index_pairs:
        q = np.repeat(np.arange(q_count), len(rows))
        first_row = q * n_samples + np.tile(rows, q_count)
        second_row = q * n_samples + np.tile(cols, q_count)
        frames.append(
            pd.DataFrame(
                {
                    "query_id": a.query_id.to_numpy()[first_row],
                    "query": a["query"].to_numpy()[first_row],
                    "query_type": a.query_type.to_numpy()[first_row],
                    "stage1": stage_a,
                    "seed1": a.seed.to_numpy()[first_row],
                    "response1": a.response.to_numpy()[first_row],
                    "stage2": second.stage.to_numpy()[second_row],
                    "seed2": second.seed.to_numpy()[second_row],
                    "response2": second.response.to_numpy()[second_row],
                    "same_stage": int(second is a),
                },
                columns=list(PAIR_COLUMNS),
            )
        )
    pairs = pd.concat(frames, ignore_index=True)
    scores = np.asarray(score_fn(pairs), dtype=float)
    if scores.shape != (len(pairs),):
        raise ValueError(f"score_fn returned shape {scores.shape} for {len(pairs)} pairs; expected ({len(pairs)},)")
    n_within = len(frames[0])
    within = np.full((q_count, n_samples, n_samples), np.nan)
    within[:, i, j] = scores[:n_within].reshape(q_count, -1)
    within[:, j, i] = within[:, i, j]
    across = None if stage_b is None else scores[n_within:].reshape(q_count, n_samples, n_samples)
    return ScoreCube(query_ids, within, across, stage_a, stage_b)


@dataclasses.dataclass(frozen=True)
class RejectionRate:
    """How often the model-wise test rejected over simulated runs.

    Attributes:
        rate: rejections / n_runs (false alarm rate under A/A, power under a change).
        ci_low, ci_high: Clopper-Pearson interval of the rate at ``confidence``.
        rejections, n_runs: the counts.
        alpha: the test's significance level.
        n_queries, samples_per_query: the simulated budget.
        confidence: level of the interval.
    """

    rate: float
    ci_low: float
    ci_high: float
    rejections: int
    n_runs: int
    alpha: float
    n_queries: int
    samples_per_query: int
    confidence: float = 0.95


def rejection_rate(
    p_values: np.ndarray, alpha: float, n_queries: int, samples_per_query: int, confidence: float = 0.95
) -> RejectionRate:
    """Summarises simulated p-values as a :class:`RejectionRate` (rejection: ``p < alpha``)."""
    rejections = int((p_values < alpha).sum())
    interval = stats.binomtest(rejections, len(p_values)).proportion_ci(confidence, method="exact")
    return RejectionRate(
        rejections / len(p_values),
        float(interval.low),
        float(interval.high),
        rejections,
        len(p_values),
        alpha,
        n_queries,
        samples_per_query,
        confidence,
    )


def _block_means(matrix: np.ndarray, queries: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Mean of ``matrix[q][rows_q][:, cols_q]`` per drawn query, ignoring the NaN diagonal.

    Args:
        matrix: (Q, n1, n2) pair scores.
        queries: (n,) drawn query indices.
        rows, cols: (n, k1) and (n, k2) response indices per drawn query.

    Returns:
        (n,) block means.
    """
    block = matrix[queries[:, None, None], rows[:, :, None], cols[:, None, :]]
    return np.nanmean(block, axis=(1, 2))


def _random_subsets(rng: np.random.Generator, n: int, population: int, size: int) -> np.ndarray:
    """(n, size) indices: for each of n rows, ``size`` distinct draws from range(population)."""
    return np.argsort(rng.random((n, population)), axis=1)[:, :size]


def _draw_queries(rng: np.random.Generator, q_count: int, n_queries: int, replace: bool) -> np.ndarray:
    if not replace and n_queries > q_count:
        raise ValueError(f"cannot draw {n_queries} of {q_count} queries without replacement")
    return rng.choice(q_count, size=n_queries, replace=replace)


def simulate_differences(
    cube: ScoreCube,
    n_queries: int,
    samples_per_query: int,
    n_runs: int,
    seed: int | Sequence[int] = 0,
    replace: bool = True,
    aa: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-query within and across means of simulated model-wise test runs.

    Args:
        cube: the pair scores.
        n_queries: queries per run.
        samples_per_query: responses per stage and query per run (k).
        n_runs: runs.
        seed: seeds the draws (anything ``numpy.random.default_rng`` takes).
        replace: draw queries with replacement.
        aa: A/A runs: A1 and A2 are disjoint random halves of A's responses (needs
            ``2 * k <= n_a``); otherwise A is k of A's responses and B k of B's.

    Returns:
        (within, across), each (n_runs, n_queries).
    """
    if samples_per_query < 2:
        raise ValueError("samples_per_query must be at least 2 (within-stage pairs need two responses)")
    n_a = cube.within.shape[1]
    if aa and 2 * samples_per_query > n_a:
        raise ValueError(f"A/A runs need 2 * samples_per_query <= {n_a} responses per query")
    if not aa and (cube.across is None or samples_per_query > min(n_a, cube.across.shape[2])):
        raise ValueError("power runs need a cube with stage_b and samples_per_query <= responses per stage")
    rng = np.random.default_rng(seed)
    within = np.empty((n_runs, n_queries))
    across = np.empty((n_runs, n_queries))
    for run in range(n_runs):
        queries = _draw_queries(rng, len(cube.query_ids), n_queries, replace)
        if aa:
            halves = _random_subsets(rng, n_queries, n_a, 2 * samples_per_query)
            a1, a2 = halves[:, :samples_per_query], halves[:, samples_per_query:]
            within[run] = _block_means(cube.within, queries, a1, a1)
            across[run] = _block_means(cube.within, queries, a1, a2)
        else:
            a = _random_subsets(rng, n_queries, n_a, samples_per_query)
            b = _random_subsets(rng, n_queries, cube.across.shape[2], samples_per_query)
            within[run] = _block_means(cube.within, queries, a, a)
            across[run] = _block_means(cube.across, queries, a, b)
    return within, across


def aa_false_alarm_rate(
    cube: ScoreCube,
    n_queries: int | None = None,
    samples_per_query: int | None = None,
    n_runs: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
    replace: bool = True,
    confidence: float = 0.95,
) -> RejectionRate:
    """Fraction of A/A runs (same stage, disjoint seeds, resampled queries) that reject.

    Args:
        cube: pair scores; only ``cube.within`` is used.
        n_queries: queries per run (default: all of the cube's).
        samples_per_query: responses per pseudo-stage (default: half of A's responses).
        n_runs: simulated runs.
        alpha: significance level.
        seed: seeds the draws.
        replace: draw queries with replacement.
        confidence: level of the Clopper-Pearson interval.

    Returns:
        The :class:`RejectionRate` (should cover alpha for a calibrated test).
    """
    n_queries = n_queries or len(cube.query_ids)
    samples_per_query = samples_per_query or cube.within.shape[1] // 2
    within, across = simulate_differences(cube, n_queries, samples_per_query, n_runs, seed, replace, aa=True)
    _, p_values = one_sided_paired_t(within, across)
    return rejection_rate(p_values, alpha, n_queries, samples_per_query, confidence)


def power_curve(
    cube: ScoreCube,
    n_queries: Sequence[int],
    samples_per_query: Sequence[int] | int | None = None,
    n_runs: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    replace: bool = True,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Empirical power of the model-wise test against the cube's stage B.

    Args:
        cube: pair scores with ``stage_b``.
        n_queries: numbers of queries to simulate.
        samples_per_query: responses per stage and query (one or several values; default: all).
        n_runs: runs per grid point.
        alpha: significance level.
        seed: seeds the draws (each grid point gets its own stream).
        replace: draw queries with replacement.
        confidence: level of the Clopper-Pearson intervals.

    Returns:
        One row per (n_queries, samples_per_query) with the :class:`RejectionRate` columns.
    """
    if cube.across is None:
        raise ValueError("power_curve needs a cube with stage_b (score_cube(table, A, B, ...))")
    if samples_per_query is None:
        samples_per_query = min(cube.within.shape[1], cube.across.shape[2])
    ks = [samples_per_query] if isinstance(samples_per_query, int) else list(samples_per_query)
    rows = []
    for point, (k, n) in enumerate((k, n) for k in ks for n in n_queries):
        within, across = simulate_differences(cube, n, k, n_runs, seed=(seed, point), replace=replace)
        _, p_values = one_sided_paired_t(within, across)
        rows.append(dataclasses.asdict(rejection_rate(p_values, alpha, n, k, confidence)))
    return pd.DataFrame(rows)


def t_test_power(effect_size: float, n_queries: int | np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Power of the one-sided paired t-test with Cohen's d_z = ``effect_size``.

    Under H1 the t statistic of n differences follows a noncentral t with n - 1 degrees of
    freedom and noncentrality ``effect_size * sqrt(n)``.

    Args:
        effect_size: mean / sd of the per-query differences (within - across).
        n_queries: number(s) of queries (>= 2).
        alpha: significance level.

    Returns:
        The power, shaped like ``n_queries``.
    """
    n = np.asarray(n_queries, dtype=float)
    df = n - 1
    critical = stats.t.ppf(1 - alpha, df)
    return stats.nct.sf(critical, df, effect_size * np.sqrt(n))


def queries_for_power(effect_size: float, power: float = 0.8, alpha: float = 0.05, max_queries: int = 1_000_000) -> int:
    """Smallest number of queries whose t-test power reaches ``power`` (noncentral t formula).

    Args:
        effect_size: d_z of the change to detect (> 0).
        power: target power.
        alpha: significance level.
        max_queries: search limit.

    Raises:
        ValueError: when ``effect_size <= 0`` (nothing to detect) or the target needs more
            than ``max_queries``.
    """
    if not effect_size > 0:
        raise ValueError(f"effect_size must be > 0 to plan for power, got {effect_size}")
    if t_test_power(effect_size, max_queries, alpha) < power:
        raise ValueError(f"power {power} needs more than {max_queries} queries at effect size {effect_size}")
    low, high = 2, max_queries  # power(low) may already suffice; power is increasing in n
    while low < high:
        middle = (low + high) // 2
        if t_test_power(effect_size, middle, alpha) >= power:
            high = middle
        else:
            low = middle + 1
    return low


def pilot_effect_size(
    cube: ScoreCube, samples_per_query: int | None = None, n_draws: int = 100, seed: int = 0
) -> float:
    """Cohen's d_z of the per-query differences (within - across) at a given samples per query.

    Each draw uses every query once with a random subset of k responses per stage; pooling the
    draws gives the mean and sd of one query's difference including the seed-subset noise,
    which is what a real run with k samples per query sees.
    """
    k = samples_per_query or min(cube.within.shape[1], cube.across.shape[2])
    within, across = simulate_differences(cube, len(cube.query_ids), k, n_draws, seed=seed, replace=False)
    differences = (within - across).ravel()
    return float(differences.mean() / differences.std(ddof=1))


@dataclasses.dataclass(frozen=True)
class QueryPlan:
    """How many queries the model-wise test needs.

    Attributes:
        effect_size: the pilot's d_z at ``samples_per_query``.
        samples_per_query: responses per stage and query assumed.
        alpha, power: the targets.
        n_queries_formula: from :func:`queries_for_power`.
        n_queries_empirical: smallest grid size whose simulated power reaches ``power`` (None if
            no grid was given or none reaches it).
        curve: the simulated power curve (None if no grid was given).
    """

    effect_size: float
    samples_per_query: int
    alpha: float
    power: float
    n_queries_formula: int
    n_queries_empirical: int | None = None
    curve: pd.DataFrame | None = dataclasses.field(default=None, repr=False)


def plan_queries(
    cube: ScoreCube,
    power: float = 0.8,
    alpha: float = 0.05,
    samples_per_query: int | None = None,
    n_queries_grid: Sequence[int] | None = None,
    n_runs: int = 200,
    seed: int = 0,
) -> QueryPlan:
    """Plans the number of queries from a pilot cube (A vs B), by formula and by simulation.

    Args:
        cube: pilot pair scores with ``stage_b`` (the change one wants to be able to detect).
        power: target power.
        alpha: significance level.
        samples_per_query: responses per stage and query (default: all in the cube).
        n_queries_grid: if given, query counts at which to simulate the power curve.
        n_runs: simulated runs per grid point.
        seed: seeds the simulations.
    """
    k = samples_per_query or min(cube.within.shape[1], cube.across.shape[2])
    effect_size = pilot_effect_size(cube, k, seed=seed)
    n_formula = queries_for_power(effect_size, power, alpha)
    if n_queries_grid is None:
        return QueryPlan(effect_size, k, alpha, power, n_formula)
    curve = power_curve(cube, sorted(n_queries_grid), k, n_runs, alpha, seed)
    reached = curve[curve.rate >= power].n_queries
    return QueryPlan(effect_size, k, alpha, power, n_formula, int(reached.min()) if len(reached) else None, curve)


def minimum_detectable_effect(n_queries: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest Cohen's d_z the one-sided paired t-test detects with ``power`` at ``n_queries``.

    >>> round(minimum_detectable_effect(27), 2)
    0.49
    """
    return float(optimize.brentq(lambda d: t_test_power(d, n_queries, alpha) - power, 1e-9, 100.0))
