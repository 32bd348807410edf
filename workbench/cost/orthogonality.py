"""Are the Costly Dilemma's axes orthogonal? Rank correlations across stages that respect how the stages are grouped.

Stages are not independent units: the precision variants of one weight set share its answers, and
the base model differs from every fine-tuned stage in many ways at once. A plain Spearman test over
stages counts each variant as a unit and lets one split (base vs fine-tuned) make a correlation. So:

* :func:`partial_spearman`: Spearman's rho after removing, from both axes' ranks, what the grouping
  variables (family, precision) explain by least squares;
* :func:`grouped_permutation_p`: the p-value of a statistic when one axis is permuted *within* each
  family only, so a difference between families cannot count as a correlation;
* :func:`resampled_cards`: bootstrap replicates in which every axis is resampled: weight sets (with
  all their variants) drawn with replacement, the evaluated items, and the timed requests;
* :func:`grouped_correlations`: one row per pair of axes with all of these, the units, and a verdict
  at a stated equivalence margin ("orthogonal" only when the whole interval lies within it).

>>> a, b = np.arange(8.0), np.array([1.0, 0, 3, 2, 5, 4, 7, 6])
>>> round(partial_spearman(a, b, np.zeros((8, 0))), 3)   # no controls: plain Spearman
0.905
>>> groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
>>> round(partial_spearman(a, b, groups[:, None].astype(float)), 3)   # the family split removed
0.6
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats


def partial_spearman(a, b, controls: np.ndarray) -> float:
    """Spearman's rho of ``a`` and ``b`` after regressing both ranks on ``controls`` ((n, k) numbers, e.g. dummies).

    Returns nan when either residual has no variance (the controls explain the axis entirely).
    """
    design = np.column_stack([np.ones(len(a)), np.asarray(controls, float)])
    residuals = []
    for values in (a, b):
        ranks = stats.rankdata(np.asarray(values, float))
        residuals.append(ranks - design @ np.linalg.lstsq(design, ranks, rcond=None)[0])
    spread = [r.std() for r in residuals]
    if min(spread) < 1e-9:
        return float("nan")
    return float(np.corrcoef(*residuals)[0, 1])


def dummies(table: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """(n, k) indicator columns of ``columns``' levels, one level of each dropped (the intercept's)."""
    return pd.get_dummies(table[list(columns)].astype(str), drop_first=True).to_numpy(dtype=float)


def grouped_permutation_p(
    statistic: Callable[[np.ndarray], float], b: np.ndarray, groups, n_permutations: int = 2000, seed: int = 0
) -> float:
    """Two-sided p-value of ``statistic(b)`` against ``b`` permuted within each group of ``groups``.

    >>> b = np.array([0.0, 1, 2, 3])
    >>> grouped_permutation_p(lambda v: v[0] - v[1], b, [0, 0, 1, 1], seed=0) <= 1.0
    True
    """
    b, groups = np.asarray(b, float), np.asarray(groups)
    observed = abs(statistic(b))
    if not np.isfinite(observed):
        return float("nan")
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    null = np.empty(n_permutations)
    for i in range(n_permutations):
        permuted = b.copy()
        for index in members:
            permuted[index] = b[rng.permutation(index)]
        null[i] = abs(statistic(permuted))
    return float((1 + np.sum(np.nan_to_num(null, nan=0.0) >= observed - 1e-12)) / (1 + n_permutations))


def resampled_cards(
    scores: Sequence, stages: pd.DataFrame, card: Callable, replicates: int, seed: int = 0
) -> list[pd.DataFrame]:
    """Scorecards on bootstrap replicates that resample every axis.

    Each replicate draws weight sets with replacement (a drawn set brings all its variants; a set drawn
    twice appears twice, renamed ``<stage>#2``), the items of every set (the same resample for every
    stage), and each stage's timed requests (their median prices the serving cost).

    Args:
        scores: :class:`workbench.cost.scorecard.StageScores` per stage.
        stages: :func:`workbench.cost.stage_grid.stage_table` (its ``weights`` column).
        card: ``card(scores, rows, seconds)`` -> a scorecard (e.g. :func:`workbench.cost.scorecard.scorecard`
            with the prices bound).
        replicates: how many.

    Returns:
        The replicates, each with the columns of ``card`` and ``weights``, ``family``, ``precision``.
    """
    rng = np.random.default_rng(seed)
    weights = stages.loc[[s.stage for s in scores], "weights"]
    sets = list(scores[0].gold)
    out = []
    for _ in range(replicates):
        drawn = rng.choice(weights.unique(), size=weights.nunique(), replace=True)
        chosen, seen = [], {}
        for weight_set in drawn:
            seen[weight_set] = seen.get(weight_set, 0) + 1
            suffix = "" if seen[weight_set] == 1 else f"#{seen[weight_set]}"
            chosen += [replace(s, stage=s.stage + suffix) for s in scores if weights[s.stage] == weight_set]
        rows = {name: rng.integers(0, len(scores[0].gold[name]), len(scores[0].gold[name])) for name in sets}
        seconds = {}
        for s in chosen:
            timed = np.asarray(s.request_seconds.get("SST-5", [s.seconds_per_request]))
            seconds[s.stage] = float(np.median(rng.choice(timed, size=len(timed))))
        replicate = card(chosen, rows, seconds)
        labels = stages.loc[[name.split("#")[0] for name in replicate.index], ["weights", "family", "precision"]]
        out.append(replicate.assign(**{c: labels[c].to_numpy() for c in labels}))
    return out


def stage_intervals(replicates: Sequence[pd.DataFrame], stages, columns: Sequence[str]) -> pd.DataFrame:
    """Per stage, the 95% percentile interval of each column over the replicates that drew it (first copy).

    >>> reps = [pd.DataFrame({"x": [float(i)]}, index=["a"]) for i in range(101)] + [pd.DataFrame({"x": [9.0]}, ["b"])]
    >>> stage_intervals(reps, ["a", "b"], ["x"]).round(1).to_dict("index")
    {'a': {'x_low': 2.5, 'x_high': 97.5}, 'b': {'x_low': 9.0, 'x_high': 9.0}}
    """
    rows = {}
    for stage in stages:
        drawn = [r.loc[stage] for r in replicates if stage in r.index]
        rows[stage] = {}
        for column in columns:
            low, high = _interval(np.array([row[column] for row in drawn], dtype=float))
            rows[stage].update({f"{column}_low": low, f"{column}_high": high})
    return pd.DataFrame.from_dict(rows, orient="index")


def grouped_correlations(
    card: pd.DataFrame,
    replicates: Sequence[pd.DataFrame],
    columns: Sequence[str],
    margin: float,
    controls: Sequence[str] = ("family", "precision"),
    alpha: float = 0.05,
    n_permutations: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every pair of axes: Spearman and partial Spearman, within-family permutation p-values, bootstrap intervals.

    Args:
        card: one row per stage with the axes and ``weights``, ``family``, ``precision`` columns.
        replicates: :func:`resampled_cards`.
        columns: the axes.
        margin: the equivalence margin: the axes count as orthogonal when the 95% interval of the partial rho
            lies within (-margin, margin).
        controls: the grouping columns the partial correlation removes.
        alpha: level of the permutation tests.

    Returns:
        One row per pair: rho with its bootstrap interval (low, high) and within-family permutation p-value (p);
        partial_rho with partial_low, partial_high and p_partial (also permuted within families);
        stages, weight_sets (the independent units: variants of one weight set
        share its answers), families, replicates, verdict ("correlated", "orthogonal within +-margin" or
        "inconclusive").
    """
    with warnings.catch_warnings():
        # A constant axis (every stage alike, or a replicate that drew one weight set) has no rank correlation: nan.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return _grouped_correlations(card, replicates, columns, margin, controls, alpha, n_permutations, seed)


def _grouped_correlations(card, replicates, columns, margin, controls, alpha, n_permutations, seed) -> pd.DataFrame:
    families = card["family"].to_numpy()
    rows = []
    for i, a in enumerate(columns):
        for b in columns[i + 1 :]:
            x = card[a].to_numpy(float)

            def rho(v, x=x):
                return stats.spearmanr(x, v).statistic

            def partial(v, x=x):
                return partial_spearman(x, v, dummies(card, controls))

            boot = np.array([[rho_of(r, a, b), partial_of(r, a, b, controls)] for r in replicates]).reshape(-1, 2)
            intervals = [_interval(boot[:, k]) for k in range(2)]
            values = card[b].to_numpy(float)
            p_rho = grouped_permutation_p(rho, values, families, n_permutations, seed)
            p_partial = grouped_permutation_p(partial, values, families, n_permutations, seed)
            low, high = intervals[1]
            if p_partial < alpha:
                verdict = "correlated"
            elif -margin < low and high < margin:
                verdict = f"orthogonal within +-{margin}"
            else:
                verdict = "inconclusive"
            rows.append(
                {
                    "axis_a": a,
                    "axis_b": b,
                    "rho": float(rho(values)),
                    "low": intervals[0][0],
                    "high": intervals[0][1],
                    "p": p_rho,
                    "partial_rho": partial(values),
                    "partial_low": low,
                    "partial_high": high,
                    "p_partial": p_partial,
                    "stages": len(card),
                    "weight_sets": card["weights"].nunique(),
                    "families": card["family"].nunique(),
                    "replicates": int(np.isfinite(boot[:, 1]).sum()),
                    "verdict": verdict,
                }
            )
    return pd.DataFrame(rows)


def _interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    return tuple(np.quantile(finite, [0.025, 0.975])) if len(finite) else (np.nan, np.nan)


def rho_of(card: pd.DataFrame, a: str, b: str) -> float:
    return float(stats.spearmanr(card[a], card[b]).statistic)


def partial_of(card: pd.DataFrame, a: str, b: str, controls: Sequence[str]) -> float:
    return partial_spearman(card[a].to_numpy(float), card[b].to_numpy(float), dummies(card, controls))


def orthogonality_summary(table: pd.DataFrame, margin: float) -> str:
    """Markdown: each pair's correlations and what they support, with the units they rest on."""
    first = table.iloc[0]
    lines = [
        f"{first.stages} stages, {first.weight_sets} weight sets (the independent units: precision variants share "
        f"their weights' answers), {first.families} families; intervals from {first.replicates} replicates "
        "resampling weight sets, items and timed requests; equivalence margin +-" + f"{margin}."
    ]
    lines += [
        f"- {r.axis_a} vs {r.axis_b}: rho {r.rho:+.2f} [{r.low:+.2f}, {r.high:+.2f}] (within-family "
        f"permutation p {r.p:.3f}); controlling for family and precision {r.partial_rho:+.2f} "
        f"[{r.partial_low:+.2f}, {r.partial_high:+.2f}] (p {r.p_partial:.3f}): **{r.verdict}**"
        for r in table.itertuples()
    ]
    return "\n".join(lines)
