"""Prometheus metrics of verdicts, shared by the server and the library (prometheus-client, extra ``metrics``).

:class:`VerdictMetrics` is the one place that turns a :class:`~spill_guard.guard.verdict.Verdict`
into metric updates. The server's :class:`~spill_guard.observability.metrics.GuardMetrics`
extends it with its HTTP metrics, so a dashboard built on ``spill_guard_answers_total`` and
``spill_guard_risk_score`` reads a server and a LangChain/LlamaIndex app alike
(names and labels: docs/observability.md).

Library objects take ``metrics=``: ``True`` (prometheus-client's default registry, what
``start_http_server`` serves), a ``CollectorRegistry``, or a ``VerdictMetrics``;
:func:`resolve_metrics` turns any of these into the one ``VerdictMetrics`` of that registry,
so a guard, a LangChain handler and a LlamaIndex LLM given the same registry share collectors
instead of failing on duplicate names. prometheus-client is imported only then.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any

from spill_guard.errors import InvalidParameterError, SpillGuardError

INSTALL_HINT = "pip install 'spill-guard[metrics]'"

#: Risk-score buckets: scores are log-probability-scale energies, mostly within a few units of 0.
RISK_BUCKETS = (-5.0, -3.0, -2.0, -1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)

#: ``reason`` label of an unscorable answer whose span was found but whose score could not be computed.
NON_FINITE = "non_finite_logits"
SCORE_UNDEFINED = "score_undefined"
NO_SPAN = "no_span"  # a span-less verdict whose reason names no known locator outcome

_by_registry: weakref.WeakKeyDictionary[Any, VerdictMetrics] = weakref.WeakKeyDictionary()
_registry_lock = threading.RLock()  # re-entered: resolve_metrics creates under it, __init__ registers under it


#: Agreement is a share of a few samples (0, 1/5, 2/5, ...): buckets at every fifth and quarter.
AGREEMENT_BUCKETS = (0.0, 0.2, 0.25, 0.4, 0.5, 0.6, 0.75, 0.8, 1.0)


def prometheus() -> Any:
    """The ``prometheus_client`` module, or a SpillGuardError naming the extra to install."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise SpillGuardError(f"Prometheus metrics need prometheus-client: {INSTALL_HINT}") from exc
    return prometheus_client


def unscorable_reason(verdict: Any) -> str:
    """Why ``verdict`` has no score, as a short label value (a bounded set, safe as a label).

    No span: the locator's outcome (``empty_answer``, ``not_found``, ``extractor_no_answer``,
    ``extractor_empty``, ``extracted_not_in_answer``), read from the verdict's reason. A span
    but no score: ``non_finite_logits`` when a per-token energy is NaN/inf, else ``score_undefined``.
    """
    from spill_guard.spans.base import Reason

    if verdict.span is None:
        reason = verdict.reason or ""
        for kind in Reason:
            if kind is not Reason.FOUND and f"({kind.value})" in reason:
                return kind.value
        return NO_SPAN
    if any(v is None or not math.isfinite(v) for v in verdict.token_scores):
        return NON_FINITE
    return SCORE_UNDEFINED


class VerdictMetrics:
    """Counters and a histogram of verdicts, registered in ``registry`` (default: a private one).

    ``observe_verdict`` counts each verdict object once per ``VerdictMetrics``, however many
    layers see it (e.g. a ``SpillChatModel`` and a ``SpillCallbackHandler`` given the same registry).
    """

    def __init__(self, registry: Any = None):
        prom = prometheus()
        self.registry = registry if registry is not None else prom.CollectorRegistry()
        r = self.registry
        try:
            self.answers = prom.Counter(
                "spill_guard_answers", "guarded answers (choices), by the guard's action", ["action"], registry=r
            )
            self.risk = prom.Histogram(
                "spill_guard_risk_score",
                "risk score of each scored answer (higher = riskier)",
                buckets=RISK_BUCKETS,
                registry=r,
            )
            self.unscorable = prom.Counter(
                "spill_guard_unscorable_answers",
                "answers that could not be scored (always flagged), by why",
                ["reason"],
                registry=r,
            )
            self.tokens = prom.Counter("spill_guard_generated_tokens", "answer tokens generated", registry=r)
            self.second_opinions = prom.Counter(
                "spill_guard_second_opinions", "first answers sampled again because one pass was unsure", registry=r
            )
            self.agreement = prom.Histogram(
                "spill_guard_second_opinion_agreement",
                "share of a second opinion's samples that agree with the first answer",
                buckets=AGREEMENT_BUCKETS,
                registry=r,
            )
        except ValueError as exc:  # prometheus-client: "Duplicated timeseries in CollectorRegistry"
            raise InvalidParameterError(
                f"this CollectorRegistry already holds spill_guard metrics ({exc}); pass the registry itself "
                "(metrics=registry) to share them, or the VerdictMetrics/GuardMetrics built on it."
            ) from exc
        self._lock = threading.Lock()
        self._counted: dict[int, weakref.ref] = {}
        with _registry_lock:
            _by_registry.setdefault(r, self)

    def observe_verdict(self, verdict: Any, *, tokens: bool = True) -> bool:
        """Count ``verdict``: its action, its risk score (or why it had none) and, with ``tokens``,
        its answer tokens. Returns False (and counts nothing) if this verdict was counted already."""
        if not self._first_time(verdict):
            return False
        action = getattr(verdict.action, "value", str(verdict.action))
        self.answers.labels(action=action).inc()
        score = verdict.score
        if score is not None and math.isfinite(score):
            self.risk.observe(float(score))
        else:
            self.unscorable.labels(reason=unscorable_reason(verdict)).inc()
        if tokens and verdict.tokens:
            self.tokens.inc(len(verdict.tokens))
        opinion = getattr(verdict, "second_opinion", None)
        if opinion is not None:
            self.second_opinions.inc()
            self.agreement.observe(float(opinion.agreement))
        return True

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of the registry and its content type."""
        prom = prometheus()
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST

    def _first_time(self, verdict: Any) -> bool:
        key = id(verdict)
        with self._lock:
            seen = self._counted.get(key)
            if seen is not None and seen() is verdict:
                return False

            def forget(_: object, k: int = key) -> None:
                self._counted.pop(k, None)

            try:  # forget the entry when the verdict is collected, so ids can be reused safely
                self._counted[key] = weakref.ref(verdict, forget)
            except TypeError:  # not weak-referenceable: count it (no dedup for such objects)
                pass
        return True


def resolve_metrics(metrics: Any) -> VerdictMetrics | None:
    """``metrics=`` of a library object: ``None``/``False`` → off; ``True`` → prometheus-client's
    default registry; a ``CollectorRegistry`` → its one ``VerdictMetrics``; a ``VerdictMetrics`` → itself."""
    if metrics is None or metrics is False:
        return None
    if isinstance(metrics, VerdictMetrics):
        return metrics
    if metrics is True:
        registry = prometheus().REGISTRY
    else:
        prom = prometheus()
        if not isinstance(metrics, prom.CollectorRegistry):
            raise InvalidParameterError(
                f"metrics must be True (prometheus_client's default registry), a prometheus_client.CollectorRegistry "
                f"or a spill_guard.observability.verdict_metrics.VerdictMetrics, got {metrics!r}."
            )
        registry = metrics
    with _registry_lock:  # get-or-create atomically: a second VerdictMetrics would clash on names
        existing = _by_registry.get(registry)
        return existing if existing is not None else VerdictMetrics(registry)
