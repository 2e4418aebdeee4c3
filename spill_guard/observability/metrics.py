"""Prometheus metrics of guarded answers (prometheus-client, extra ``serve``).

Every collector lives in a :class:`GuardMetrics` object with its own ``CollectorRegistry``,
so several apps (tests, Ray replicas in one process) never clash on the global registry.
Metric names and labels are a documented contract (docs/serving.md).
"""

from __future__ import annotations

from typing import Any

from spill_guard.errors import SpillGuardError

#: Risk-score buckets: scores are log-probability-scale energies, mostly within a few units of 0.
RISK_BUCKETS = (-5.0, -3.0, -2.0, -1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - the extra is installed in the test env
        raise SpillGuardError(
            "Prometheus metrics need prometheus-client: pip install 'spill-guard[serve]'"
        ) from exc
    return prometheus_client


class GuardMetrics:
    """The server's counters and histograms, registered in a private registry."""

    def __init__(self, registry: Any = None):
        prom = _prometheus()
        self.registry = registry if registry is not None else prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter("spill_guard_requests", "HTTP requests answered, by route and status code",
                                     ["route", "status"], registry=r)
        self.answers = prom.Counter("spill_guard_answers", "guarded answers (choices), by the guard's action",
                                    ["action"], registry=r)
        self.risk = prom.Histogram("spill_guard_risk_score", "risk score of each scored answer (higher = riskier)",
                                   buckets=RISK_BUCKETS, registry=r)
        self.latency = prom.Histogram("spill_guard_request_latency_seconds",
                                      "time from request received to last byte of the answer, by route",
                                      ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = prom.Counter("spill_guard_generated_tokens", "answer tokens generated", registry=r)
        self.tokens_per_second = prom.Histogram("spill_guard_tokens_per_second",
                                                "answer tokens per second of each request (all its choices)",
                                                buckets=TOKENS_PER_SECOND_BUCKETS, registry=r)
        self.batch_size = prom.Histogram("spill_guard_batch_size", "sequences per batched generate call",
                                         buckets=BATCH_BUCKETS, registry=r)
        self.errors = prom.Counter("spill_guard_errors", "error responses, by OpenAI error code",
                                   ["type"], registry=r)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        prom = _prometheus()
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST

    def observe_answer(self, action: str, risk: float | None) -> None:
        self.answers.labels(action=action).inc()
        if risk is not None and risk == risk:  # unscorable answers have no score to record
            self.risk.observe(risk)
