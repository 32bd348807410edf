"""What evaluation costs: metric compute in production, human ratings, and labelled-set size.

>>> round(metric_usd_per_1000(seconds_per_item=0.05, usd_per_hour=3.6), 4)   # 50 s of a $3.6/h machine
0.05
>>> human_rating_budget(usd_per_rating=0.5, ratings_per_item=3, items=400)
600.0
>>> items_for_half_width(std=0.5, half_width=0.05)   # accuracy near 50%, +-5 points at 95%
385
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from workbench.metric_aware.bootstrap import bootstrap_ci


def metric_usd_per_1000(seconds_per_item, usd_per_hour, utilisation=1.0):
    """US$ to score 1,000 items with a metric that takes ``seconds_per_item`` of a machine; broadcasts.

    Args:
        seconds_per_item: measured machine seconds per scored item (e.g. a reward model's or
            judge's forward passes, or a BLEU computation).
        usd_per_hour: the machine's price.
        utilisation: average fraction of the machine the scoring keeps busy, in (0, 1].
    """
    usd = 1000 * np.asarray(seconds_per_item, float) * np.asarray(usd_per_hour, float) / 3600 / utilisation
    return float(usd) if usd.ndim == 0 else usd


@dataclass(frozen=True)
class MetricCost:
    """One metric as a production line item.

    Attributes:
        name: e.g. "bleu", "reward-model".
        seconds_per_item: measured machine seconds to score one item.
        reference_based: whether it needs a reference answer per item. New production traffic
            has none, so each one must be written (or generated) first.
        reference_usd_per_item: what obtaining that reference costs (0 for reference-free
            metrics, or when references come for free).
    """

    name: str
    seconds_per_item: float
    reference_based: bool = False
    reference_usd_per_item: float = 0.0

    def usd_per_1000(self, usd_per_hour: float, utilisation: float = 1.0) -> float:
        """Compute plus references for 1,000 items."""
        return (
            metric_usd_per_1000(self.seconds_per_item, usd_per_hour, utilisation) + 1000 * self.reference_usd_per_item
        )


def evaluation_cost_table(metrics: Sequence[MetricCost], usd_per_hour: float, utilisation: float = 1.0) -> pd.DataFrame:
    """Per-1,000-items cost of each metric: compute, references and total US$, cheapest first."""
    rows = [
        {
            "metric": m.name,
            "reference_based": m.reference_based,
            "compute_usd_per_1000": metric_usd_per_1000(m.seconds_per_item, usd_per_hour, utilisation),
            "reference_usd_per_1000": 1000 * m.reference_usd_per_item,
        }
        for m in metrics
    ]
    table = pd.DataFrame(rows, columns=["metric", "reference_based", "compute_usd_per_1000", "reference_usd_per_1000"])
    table["total_usd_per_1000"] = table["compute_usd_per_1000"] + table["reference_usd_per_1000"]
    return table.sort_values("total_usd_per_1000", ignore_index=True)


def human_rating_budget(usd_per_rating: float, ratings_per_item: int, items: int) -> float:
    """US$ for ``ratings_per_item`` human ratings of each of ``items`` items."""
    return float(usd_per_rating * ratings_per_item * items)


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    return float(norm.ppf(0.5 + confidence / 2))


def ci_half_width(std: float, items: int, confidence: float = 0.95) -> float:
    """Normal-approximation half-width of the confidence interval of a mean over ``items`` items."""
    return _z(confidence) * std / math.sqrt(items)


def items_for_half_width(std: float, half_width: float, confidence: float = 0.95) -> int:
    """Labelled items needed for a confidence interval of the mean metric of +- ``half_width``.

    Normal approximation: n = (z std / half_width)^2, rounded up.

    Args:
        std: per-item standard deviation of the metric (sqrt(p (1 - p)) for an accuracy p).
        half_width: wanted half-width, in the metric's units.
        confidence: nominal coverage.
    """
    if std < 0 or half_width <= 0:
        raise ValueError("std must be >= 0 and half_width > 0")
    # Rounding to 9 decimals first stops float noise (100.00000000000001) from adding an item.
    return max(1, math.ceil(round((_z(confidence) * std / half_width) ** 2, 9)))


@dataclass(frozen=True)
class BootstrapScaling:
    """Half-widths of bootstrap intervals fitted as ``scale / sqrt(n)``.

    Attributes:
        scale: half-width at n = 1 under the 1/sqrt(n) law.
        exponent: the slope of log half-width on log n, fitted freely; near -0.5 when the law
            holds (nan with a single n).
    """

    scale: float
    exponent: float

    def half_width(self, items) -> float:
        """Predicted half-width at ``items`` labelled items."""
        return self.scale / np.sqrt(items)

    def items_for(self, half_width: float) -> int:
        """Items needed for ``half_width``."""
        return max(1, math.ceil(round((self.scale / half_width) ** 2, 9)))


def fit_bootstrap_scaling(items: Sequence[int], intervals: Sequence) -> BootstrapScaling:
    """Fit the 1/sqrt(n) law to bootstrap intervals computed on subsets of several sizes.

    Args:
        items: (k,) subset sizes.
        intervals: (k,) half-widths, or objects with ``low`` and ``high`` such as
            :class:`workbench.metric_aware.bootstrap.BootstrapResult`.

    Returns:
        The scale (least squares in log space with the exponent fixed at -1/2) and, as a check,
        the freely fitted exponent.
    """
    n = np.asarray(items, float)
    half = np.array([(r.high - r.low) / 2 if hasattr(r, "high") else float(r) for r in intervals])
    if n.shape != half.shape or not len(n) or np.any(n <= 0) or np.any(half <= 0):
        raise ValueError("need matching, positive subset sizes and half-widths")
    scale = float(np.exp(np.mean(np.log(half) + 0.5 * np.log(n))))
    exponent = float(np.polyfit(np.log(n), np.log(half), 1)[0]) if len(np.unique(n)) > 1 else float("nan")
    return BootstrapScaling(scale, exponent)


def bootstrap_scaling(
    metric: str, predictions, gold, sizes: Sequence[int], n_resamples: int = 500, seed: int = 0
) -> tuple[BootstrapScaling, pd.DataFrame]:
    """Bootstrap half-widths on seeded random subsets of several sizes, and the 1/sqrt(n) fit.

    Returns:
        (the fitted :class:`BootstrapScaling`, one row per size with its half-width).
    """
    predictions, gold = np.asarray(predictions, dtype=float), np.asarray(gold, dtype=float)
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        subset = rng.choice(len(gold), size=size, replace=False)
        result = bootstrap_ci(metric, predictions[subset], gold[subset], n_resamples=n_resamples, seed=seed)
        rows.append({"items": size, "estimate": result.estimate, "half_width": (result.high - result.low) / 2})
    table = pd.DataFrame(rows)
    return fit_bootstrap_scaling(table["items"], table["half_width"]), table
