"""The server's Prometheus metrics (prometheus-client, extras ``serve`` / ``metrics``).

:class:`GuardMetrics` is :class:`~spill_guard.observability.verdict_metrics.VerdictMetrics`
(the verdict metrics the library shares) plus the HTTP metrics only a server has. Every
collector lives in its own ``CollectorRegistry`` by default, so several apps (tests, Ray
replicas in one process) never clash on the global registry. Metric names and labels are a
documented contract (docs/serving.md, docs/observability.md).
"""

from __future__ import annotations

from typing import Any

from spill_guard.observability.verdict_metrics import RISK_BUCKETS, VerdictMetrics, prometheus

__all__ = ["GuardMetrics", "RISK_BUCKETS", "LATENCY_BUCKETS", "TOKENS_PER_SECOND_BUCKETS", "BATCH_BUCKETS"]

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class GuardMetrics(VerdictMetrics):
    """The server's counters and histograms: the verdict metrics plus requests, latency, throughput, errors."""

    def __init__(self, registry: Any = None):
        super().__init__(registry)
        prom = prometheus()
        r = self.registry
        self.requests = prom.Counter(
            "spill_guard_requests", "HTTP requests answered, by route and status code", ["route", "status"], registry=r
        )
        self.latency = prom.Histogram(
            "spill_guard_request_latency_seconds",
            "time from request received to last byte of the answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = prom.Histogram(
            "spill_guard_tokens_per_second",
            "answer tokens per second of each request (all its choices)",
            buckets=TOKENS_PER_SECOND_BUCKETS,
            registry=r,
        )
        self.batch_size = prom.Histogram(
            "spill_guard_batch_size", "sequences per batched generate call", buckets=BATCH_BUCKETS, registry=r
        )
        self.errors = prom.Counter("spill_guard_errors", "error responses, by OpenAI error code", ["type"], registry=r)
        self.rule = prom.Gauge(
            "spill_guard_rule_info",
            "1 for the decision rule answers are judged by now: its version (a calibration's, or threshold:<value>)",
            ["version"],
            registry=r,
        )

    def active_rule(self, version: str) -> None:
        """Mark ``version`` as the rule in force (the one labelled series at 1)."""
        self.rule.clear()
        self.rule.labels(version=version).set(1)
