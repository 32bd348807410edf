"""Prometheus metrics of one server, in a registry of its own.

A per-app :class:`prometheus_client.CollectorRegistry` (not the global default) lets a process
hold several apps, e.g. one per model stage or one per test, without "duplicated timeseries"
errors and without the counters of one app leaking into another.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

ENDPOINTS = ("/generate", "/score", "/health", "/metrics", "/v1/completions", "/v1/models")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServerMetrics:
    """The counters, histograms and gauges a server exports on ``/metrics``.

    Args:
        queue_depth: returns the number of requests waiting; read at scrape time.
        abandoned: returns the queue's :class:`workbench.serving.batching.Abandoned` counts (or
            None before the queue exists); read at scrape time.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], int], abandoned: Callable[[], object] = lambda: None):
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "workbench_requests", "HTTP requests by endpoint and status code", ["endpoint", "status"], registry=registry
        )
        self.latency = Histogram(
            "workbench_request_latency_seconds",
            "Request latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter("workbench_prompt_tokens", "Prompt tokens of served requests", registry=registry)
        self.generated_tokens = Counter(
            "workbench_generated_tokens", "Tokens generated (all samples)", registry=registry
        )
        self.abandoned_tokens = Counter(
            "workbench_abandoned_tokens",
            "Tokens decoded for samples whose client left, before their decoding stopped (not in generated_tokens)",
            registry=registry,
        )
        self.errors = Counter(
            "workbench_errors",
            "Requests not served: queue_full, timeout, client_gone, engine failure",
            ["endpoint", "reason"],
            registry=registry,
        )
        self.queue_depth = Gauge("workbench_queue_depth", "Requests waiting for the engine", registry=registry)
        self.queue_depth.set_function(queue_depth)
        self.batch_size = Histogram(
            "workbench_batch_requests", "Requests served per engine call", buckets=BATCH_BUCKETS, registry=registry
        )
        self.batched_requests = Counter(
            "workbench_batched_requests",
            "Requests that shared their engine call with other requests",
            registry=registry,
        )
        registry.register(_AbandonedCollector(abandoned))

    @staticmethod
    def endpoint_label(path: str) -> str:
        """The path for known endpoints, "other" for the rest (bounded label cardinality)."""
        return path if path in ENDPOINTS else "other"

    def observe_batch(self, requests: int) -> None:
        """Record one engine call serving ``requests`` requests."""
        self.batch_size.observe(requests)
        if requests > 1:
            self.batched_requests.inc(requests)

    def render(self) -> bytes:
        """The Prometheus text exposition of all metrics."""
        return generate_latest(self.registry)


class _AbandonedCollector:
    """Counters of abandoned work, read from the queue's tallies at scrape time."""

    def __init__(self, source: Callable[[], object]):
        self.source = source

    def collect(self):
        counts = self.source()
        requests = CounterMetricFamily(
            "workbench_abandoned_requests",
            "Requests whose client left (disconnect, timeout) before their answer, by when their work was dropped: "
            "queued (nothing computed), running (remaining chunks skipped) or late (computed for nobody)",
            labels=["when"],
        )
        requests.add_metric(["queued"], counts.queued if counts else 0)
        requests.add_metric(["running"], counts.running if counts else 0)
        requests.add_metric(["late"], counts.late if counts else 0)
        yield requests
        yield CounterMetricFamily(
            "workbench_abandoned_prompts",
            "Prompts not computed because their client left",
            value=counts.prompts_skipped if counts else 0,
        )
