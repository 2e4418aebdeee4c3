"""``SpillScoredEvent``: one scored answer, sent through LlamaIndex's instrumentation.

Every answer a :class:`~spill_guard_llama_index.SpillLLM` generates is announced on the
dispatcher of this module, which propagates to the root dispatcher; register a handler with
``llama_index.core.instrumentation.get_dispatcher().add_event_handler(handler)``.
LlamaIndex swallows exceptions raised in handlers, so a handler can observe and log but can
never block an answer: enforcement lives in the guarded engines. An answer made outside a
guarded engine is also an OpenTelemetry ``gen_ai.evaluation.result`` event on the current
span (inside one, the engine's logged decision is; docs/observability.md).
"""

from __future__ import annotations

from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events import BaseEvent
from pydantic import ConfigDict, Field

from spill_guard.guard.recording import observe_verdict
from spill_guard.guard.verdict import Verdict
from spill_guard_llama_index.generation import collecting

dispatcher = get_dispatcher(__name__)


class SpillScoredEvent(BaseEvent):
    """A SpillLLM answer with its risk score (higher = riskier) against the guard's threshold.

    ``verdict`` holds everything (tokens, per-token spilled energy, span, reason); its
    ``scored`` property gives the full :class:`~spill_guard.ScoredAnswer` with the trace.
    The flat fields repeat the headline numbers for handlers that only need those.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    model: str
    answer: str
    score: float | None = Field(description="risk score of the answer, higher = riskier; None if unscorable")
    threshold: float
    flagged: bool
    spec: str
    strategy: str = Field(default="greedy", description="how the answer was made: greedy, resample@T, reprompt")
    verdict: Verdict

    @classmethod
    def class_name(cls) -> str:
        return "SpillScoredEvent"

    @classmethod
    def of(cls, verdict: Verdict, *, strategy: str = "greedy") -> SpillScoredEvent:
        return cls(
            model=verdict.model,
            answer=verdict.original_answer,
            score=verdict.score,
            threshold=verdict.threshold,
            flagged=verdict.flagged,
            spec=verdict.spec,
            strategy=strategy,
            verdict=verdict,
        )


def emit(
    verdict: Verdict, *, strategy: str = "greedy", span_id: str | None = None, metrics: Any = None, **kwargs: Any
) -> SpillScoredEvent:
    """Build and dispatch the event for ``verdict`` (``span_id``: the LLM call's span, default the
    active one); returns it.

    Outside a guarded engine the answer is final here, so its OpenTelemetry
    ``gen_ai.evaluation.result`` event is emitted too (on the current span, the LLM call's). Inside
    one, the engine's decision is the answer's verdict: the guard emits it when the engine logs it,
    so each answer is one event. Prometheus ``metrics`` (the guard's ``VerdictMetrics``, or None)
    count the answer in the same place, for the same reason.
    """
    event = SpillScoredEvent.of(verdict, strategy=strategy)
    if span_id is not None:
        event.span_id = span_id
    dispatcher.event(event, **kwargs)
    if not collecting():
        observe_verdict(verdict, metrics)  # the core's observation of a final verdict (OpenTelemetry, metrics)
    return event
