"""What a served model's load tests and Prometheus metrics say, as tables and Axes-in plots (notebook 05)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from prometheus_client.parser import text_string_to_metric_families

from workbench.serving.loadtest import LoadTestResult


def load_test_summary(results: Mapping[int, LoadTestResult]) -> pd.DataFrame:
    """One row per concurrency: throughput, p50/p95/p99 latency in ms, requests lost and duplicated."""
    rows = {
        concurrency: {
            "throughput (req/s)": r.throughput_rps,
            "p50 (ms)": 1000 * r.latency_percentile_s(50),
            "p95 (ms)": 1000 * r.latency_percentile_s(95),
            "p99 (ms)": 1000 * r.latency_percentile_s(99),
            "lost": r.lost,
            "duplicated": r.duplicated,
        }
        for concurrency, r in results.items()
    }
    return pd.DataFrame(rows).T.rename_axis("concurrency")


def metrics_table(exposition: str) -> pd.DataFrame:
    """The samples of a Prometheus text exposition: family, sample name, labels, value (``*_created`` left out).

    >>> table = metrics_table('# TYPE hits counter\\nhits_total{endpoint="/generate"} 3.0\\n')
    >>> table[["sample", "value"]].values.tolist()
    [['hits_total', 3.0]]
    """
    samples = [
        (family.name, sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]
    return pd.DataFrame(samples, columns=["family", "sample", "labels", "value"])


def plot_latencies(ax: Axes, result: LoadTestResult, title: str = "") -> Axes:
    """Histogram of a load test's latencies in ms, with its p50 (solid), p95 (dashed) and p99 (dotted)."""
    ax.hist(1000 * np.array(result.latencies_s), bins=30, color="#4c72b0")
    for q, style in ((50, "-"), (95, "--"), (99, ":")):
        ax.axvline(1000 * result.latency_percentile_s(q), color="k", ls=style, label=f"p{q}")
    ax.set(xlabel="latency (ms)", ylabel="requests", title=title or f"{result.throughput_rps:.2f} req/s")
    ax.legend()
    return ax


def plot_latency_buckets(ax: Axes, metrics: pd.DataFrame, endpoint: str = "/generate") -> Axes:
    """The cumulative latency histogram the server exports for ``endpoint`` (rows of :func:`metrics_table`)."""
    buckets = metrics[metrics["sample"].str.endswith("_bucket") & metrics["family"].str.contains("latency")]
    buckets = buckets[buckets["labels"].apply(lambda labels: labels.get("endpoint") == endpoint)]
    ax.step(buckets["labels"].apply(lambda labels: float(labels["le"])), buckets["value"], where="post")
    ax.set(
        xscale="log",
        xlabel="latency bound (s)",
        ylabel="requests ≤ bound",
        title=f"{endpoint} latency histogram (cumulative)",
    )
    return ax
