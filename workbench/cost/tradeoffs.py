"""Quality against cost: measured quality and seconds of each decoding strategy, and the Pareto front."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from workbench.cost.deployment import pareto_mask


def quality_cost_points(run, timing: pd.DataFrame, ns: Sequence[int], metric: str = "rmse") -> pd.DataFrame:
    """Quality and measured cost of greedy, the sampled mean at each N and the exact mean.

    Args:
        run: a :class:`~workbench.metric_aware.experiments.TaskRun` with at least ``max(ns)`` samples.
        timing: from :func:`time_methods` on the same model.
        ns: sample counts (first-N prefixes of the run's samples).
        metric: the quality metric.

    Returns:
        One row per point: strategy, method, n, metric value, seconds_per_item.
    """
    from workbench.metric_aware.experiments import k_sweep  # here, not at the top: it imports torch

    sweep = k_sweep(run, list(ns), (metric,)).set_index(["k", "strategy"])["value"]
    seconds = timing.set_index(["method", "n"])["seconds_per_item"]
    k_max = max(ns)
    rows = [
        {
            "strategy": "greedy",
            "method": "greedy",
            "n": 1,
            metric: sweep[(k_max, "greedy")],
            "seconds_per_item": seconds[("greedy", 1)],
        }
    ]
    rows += [
        {
            "strategy": "sampled mean",
            "method": "sample",
            "n": n,
            metric: sweep[(n, "mean")],
            "seconds_per_item": seconds[("sample", n)],
        }
        for n in ns
    ]
    if run.exact_probs is not None:
        k = len(run.grid)
        rows.append(
            {
                "strategy": "exact mean",
                "method": "exact",
                "n": k,
                metric: sweep[(k_max, "exact mean")],
                "seconds_per_item": seconds[("exact", k)],
            }
        )
    return pd.DataFrame(rows)


def with_pareto(table: pd.DataFrame, quality: str, cost: str, lower_is_better: bool = True) -> pd.DataFrame:
    """``table`` with a boolean column ``pareto``: no other row is at least as cheap and as good."""
    values = table[quality].to_numpy(dtype=float)
    return table.assign(pareto=pareto_mask(-values if lower_is_better else values, table[cost].to_numpy(dtype=float)))
