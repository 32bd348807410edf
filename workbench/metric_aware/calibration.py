"""Calibration of an exact answer distribution: NLL, expected calibration error, and a temperature
fitted on dev data; the reliability diagram's points (:func:`reliability`) and whether the distribution is as
wide as the errors of its mean (:func:`spread_report`), which the mean's RMSE-optimality needs.

The distribution is the model's probability of each grid answer, renormalised on the grid
(:class:`workbench.inference.types.GridScore`). The gold answer is the grid point nearest to the
gold value. Temperature scaling here acts on whole answers: ``p_T(k) ∝ p(k) ** (1 / T)``, i.e.
``softmax(log p / T)`` over the grid. It keeps the ranking of answers (so the mode is unchanged)
and changes how much mass the mean and median see away from it. Fitting ``T`` on dev by NLL and
applying it to test is the "tuned T" strategy family of the metric-aware tables.

>>> probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
>>> gold = np.array([0, 1, 1, 1])  # right half the time at 90% confidence: over-confident
>>> t = fit_temperature(probs, gold)
>>> bool(t > 1), round(grid_nll(with_temperature(probs, t), gold), 3) < round(grid_nll(probs, gold), 3)
(True, True)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from workbench.metric_aware.metrics import get_metric
from workbench.tasks.grid import nearest_grid_index

_FLOOR = 1e-300  # log(0) guard: grid probabilities that underflowed


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """(n, K) ``softmax(log probs / temperature)`` over the grid."""
    logits = np.log(np.maximum(np.asarray(probs, float), _FLOOR)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def grid_nll(probs: np.ndarray, gold: np.ndarray) -> float:
    """Mean negative log-probability of the gold grid answer (``gold`` as indices)."""
    return float(get_metric("nll")(np.asarray(probs, float), np.asarray(gold)))


def grid_ece(probs: np.ndarray, gold: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error of the most probable grid answer (``gold`` as indices)."""
    return float(get_metric("ece")(np.asarray(probs, float), np.asarray(gold), n_bins=n_bins))


def fit_temperature(probs: np.ndarray, gold: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature that minimises the NLL of the gold grid answers (``gold`` as indices).

    The NLL is convex in ``1 / T`` for softmax scaling, so a bounded scalar search over
    ``log T`` finds the optimum.
    """
    result = minimize_scalar(
        lambda log_t: grid_nll(with_temperature(probs, np.exp(log_t)), gold),
        bounds=np.log(bounds),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def calibration_report(
    probs: np.ndarray, gold_values: np.ndarray, grid: np.ndarray, temperature: float | None = None
) -> dict[str, float]:
    """NLL and ECE on the grid, before and (with ``temperature``) after temperature scaling."""
    gold = nearest_grid_index(gold_values, grid)
    report = {"nll": grid_nll(probs, gold), "ece": grid_ece(probs, gold)}
    if temperature is not None:
        scaled = with_temperature(probs, temperature)
        report.update(
            {"temperature": temperature, "nll tuned T": grid_nll(scaled, gold), "ece tuned T": grid_ece(scaled, gold)}
        )
    return report


def reliability(probs: np.ndarray, gold: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """The reliability diagram's points: per confidence bin of the most probable grid answer, its mean
    confidence, the share of those answers that are right, and how many items fall in the bin (empty bins left out).

    Args:
        probs: (n, G) grid probabilities.
        gold: (n,) gold grid indices.
        n_bins: equal-width bins on [0, 1] (the last one holds 1.0), as :func:`grid_ece` bins them.

    >>> reliability(np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]), np.array([0, 1, 1]), n_bins=2).round(3)
       confidence  accuracy  n
    0         0.8     0.667  3
    """
    probs = np.asarray(probs, float)
    confidence, right = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(gold)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    rows = [
        {"confidence": confidence[bins == b].mean(), "accuracy": right[bins == b].mean(), "n": int((bins == b).sum())}
        for b in range(n_bins)
        if (bins == b).any()
    ]
    return pd.DataFrame(rows)


def spread_report(probs: np.ndarray, grid: np.ndarray, gold_values: np.ndarray) -> dict[str, float]:
    """Is the distribution as wide as the errors of its mean? The mean is RMSE-optimal only when it is.

    For a calibrated model the expected squared error of its mean equals its mean variance, so
    ``sd / rmse`` (the root of the mean predictive variance over the mean's RMSE) is about 1; below 1 the
    model is over-confident on the score scale, above 1 under-confident. ``shrinkage`` is the mean distance of
    the mean from the grid's centre: a flatter distribution pulls its mean toward the centre of the grid,
    which is not where the gold scores' mass is.

    >>> r = spread_report(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0.0, 2.0]), np.array([0.0, 2.0]))
    >>> r["rmse of mean"], r["sd / rmse"], r["distance from grid centre"]
    (1.0, 1.0, 0.0)
    """
    probs, grid, gold = np.asarray(probs, float), np.asarray(grid, float), np.asarray(gold_values, float)
    mean = probs @ grid
    variance = probs @ grid**2 - mean**2
    rmse = float(np.sqrt(np.mean((mean - gold) ** 2)))
    sd = float(np.sqrt(np.mean(np.maximum(variance, 0.0))))
    centre = (grid.min() + grid.max()) / 2
    return {
        "rmse of mean": rmse,
        "predicted sd": sd,
        "sd / rmse": sd / max(rmse, 1e-12),
        "distance from grid centre": float(np.mean(np.abs(mean - centre))),
    }
