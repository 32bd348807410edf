"""Three-way decisions: ``different``, ``equivalent`` or ``inconclusive``, at a margin stated before the run.

A test that does not reject says nothing by itself ("not rejected" is not "consistent"). Every method of
notebook 06 reduces a comparison to per-query differences ``d_q`` (higher: the stages differ more), whose
standardised mean ``delta = mean / sd`` is Cohen's d_z. Two tests run on them:

* **equality** (one-sided paired t-test, H1: delta > 0): rejected -> ``different``;
* **equivalence** (two one-sided tests, TOST, on the standardised mean at the margin ``margin_dz``):
  H0 ``delta <= -margin`` and H0 ``delta >= margin`` both rejected -> ``equivalent``. The statistic is the
  t of the differences and each one-sided null is tested against the noncentral t with noncentrality
  ``+-margin * sqrt(n)`` (the exact test for a standardised mean).

Otherwise the decision is ``inconclusive``. The planner (:func:`plan_margin`) says how many queries give
power ``power`` to both tests at the margin: the equality test against ``delta = margin`` and the
equivalence test at ``delta = 0``.

>>> rng = np.random.default_rng(0)
>>> decide(rng.normal(0.0, 1.0, 400), margin_dz=0.25).decision
'equivalent'
>>> decide(rng.normal(0.6, 1.0, 40), margin_dz=0.25).decision
'different'
>>> decide(np.array([0.5, -0.4, 0.1, 0.3, -0.2]), margin_dz=0.25).decision
'inconclusive'
>>> plan_margin(0.25).n_queries
138
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy import stats

from workbench.consistency.power import queries_for_power

DECISIONS = ("different", "equivalent", "inconclusive")


def tost_p_value(t: np.ndarray, n: int, margin_dz: float) -> np.ndarray:
    """The TOST p-value (the larger of the two one-sided p-values) of t statistics of ``n`` differences.

    Args:
        t: t statistic(s) ``mean / (sd / sqrt(n))`` of the differences.
        n: number of differences (queries), at least 2.
        margin_dz: the equivalence margin on the standardised mean (> 0).

    Returns:
        p-values shaped like ``t``; below alpha means ``|delta| < margin_dz`` at level alpha.
    """
    if margin_dz <= 0:
        raise ValueError(f"margin_dz must be > 0, got {margin_dz}")
    df, shift = n - 1, margin_dz * np.sqrt(n)
    t = np.asarray(t, dtype=float)
    with warnings.catch_warnings():  # nct warns about precision far in the tails, where p is 0 or 1 anyway
        warnings.simplefilter("ignore", RuntimeWarning)
        upper = stats.nct.cdf(t, df, shift)  # H0: delta >= margin
        lower = stats.nct.sf(t, df, -shift)  # H0: delta <= -margin
    return np.nan_to_num(np.maximum(upper, lower), nan=1.0)


def t_statistics(differences: np.ndarray) -> np.ndarray:
    """t of the per-query differences along the last axis; +-inf for a constant non-zero difference, 0 for zeros."""
    d = np.asarray(differences, dtype=float)
    n = d.shape[-1]
    mean, sd = d.mean(axis=-1), d.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / np.sqrt(n))
    return np.where(sd > 1e-12 * (1 + np.abs(mean)), t, np.sign(mean) * np.where(np.abs(mean) > 1e-12, np.inf, 0.0))


@dataclasses.dataclass(frozen=True)
class ThreeWay:
    """A three-way decision on per-query differences.

    Attributes:
        decision: one of :data:`DECISIONS`.
        p_value: the equality test's one-sided p-value (H1: delta > 0).
        tost_p: the equivalence test's p-value at ``margin_dz``.
        effect_dz: the observed standardised mean difference.
        n_queries: differences used.
        margin_dz, alpha: the settings.
    """

    decision: str
    p_value: float
    tost_p: float
    effect_dz: float
    n_queries: int
    margin_dz: float
    alpha: float


def decision_of(p_value: float, tost_p: float, alpha: float) -> str:
    """``different`` when equality is rejected, else ``equivalent`` when TOST rejects, else ``inconclusive``."""
    if p_value < alpha:
        return "different"
    return "equivalent" if tost_p < alpha else "inconclusive"


def decide(differences: np.ndarray, margin_dz: float, alpha: float = 0.05) -> ThreeWay:
    """Equality and equivalence tests on per-query differences (positive: the stages differ), and the decision.

    Args:
        differences: (n_queries,) per-query differences of one comparison.
        margin_dz: the equivalence margin on d_z, fixed before the run.
        alpha: level of both tests.
    """
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"need a 1-D array of at least 2 per-query differences, got shape {d.shape}")
    t = float(t_statistics(d))
    p = float(stats.t.sf(t, len(d) - 1)) if np.isfinite(t) else float(t < 0)
    tost = float(tost_p_value(t, len(d), margin_dz))
    sd = d.std(ddof=1)
    effect = float(d.mean() / sd) if sd > 0 else float("nan")
    return ThreeWay(decision_of(p, tost, alpha), p, tost, effect, len(d), margin_dz, alpha)


def tost_power(n_queries: int, margin_dz: float, alpha: float = 0.05, true_dz: float = 0.0) -> float:
    """Power of the equivalence test with ``n_queries`` differences when the true d_z is ``true_dz``.

    The test is passed when ``t`` lies between the two critical values; ``t`` follows a noncentral t with
    noncentrality ``true_dz * sqrt(n)``.
    """
    df, shift = n_queries - 1, margin_dz * np.sqrt(n_queries)
    high = stats.nct.ppf(alpha, df, shift)
    low = stats.nct.ppf(1 - alpha, df, -shift)
    if high <= low:
        return 0.0
    return float(
        stats.nct.cdf(high, df, true_dz * np.sqrt(n_queries)) - stats.nct.cdf(low, df, true_dz * np.sqrt(n_queries))
    )


@dataclasses.dataclass(frozen=True)
class MarginPlan:
    """Queries needed for power ``power`` at the margin (predicted by the noncentral t, not simulated).

    Attributes:
        n_queries: the larger of the two needs.
        n_difference: queries for the equality test to reach ``power`` against ``delta = margin_dz``.
        n_equivalence: queries for TOST to reach ``power`` when ``delta = 0``.
        margin_dz, alpha, power: the settings.
    """

    n_queries: int
    n_difference: int
    n_equivalence: int
    margin_dz: float
    alpha: float
    power: float


def plan_margin(margin_dz: float, alpha: float = 0.05, power: float = 0.8, max_queries: int = 100_000) -> MarginPlan:
    """Queries at which both tests have ``power`` at the margin (see the module docstring)."""
    n_difference = queries_for_power(margin_dz, power, alpha, max_queries)
    low, high = 2, max_queries
    if tost_power(high, margin_dz, alpha) < power:
        raise ValueError(f"equivalence at margin {margin_dz} needs more than {max_queries} queries")
    while low < high:  # TOST power increases with n
        middle = (low + high) // 2
        if tost_power(middle, margin_dz, alpha) >= power:
            high = middle
        else:
            low = middle + 1
    return MarginPlan(max(n_difference, low), n_difference, low, margin_dz, alpha, power)
