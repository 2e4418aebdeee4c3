"""``SpillGuardMiddleware``: the guard's policy inside a LangChain v1 agent (``create_agent``).

``wrap_model_call`` lets the model answer, reads the spill report on the returned message,
and applies the policy: pass or flag it, retry the model call (with the retry's sampling or
re-prompt settings, through the same context variable as the guarded runnable), replace it
with the abstention reply, or raise ``HallucinationDetected``. The model must be a
:class:`SpillChatModel`; the final verdict is added to the message's report.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from spill_guard_langchain._requirements import require_langchain_agents

require_langchain_agents()

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402

from spill_guard.errors import InvalidParameterError  # noqa: E402
from spill_guard.guard import HallucinationDetected, Verdict  # noqa: E402
from spill_guard.observability.verdict_metrics import resolve_metrics  # noqa: E402
from spill_guard.policy import Action, Candidate, Flag, Policy  # noqa: E402
from spill_guard_langchain.decisions import adecide, candidate_from, decide, final_verdict  # noqa: E402
from spill_guard_langchain.guarded import NoSpillReportError  # noqa: E402
from spill_guard_langchain.report import REPORT_KEY, verdict_of  # noqa: E402
from spill_guard_langchain.review_sink import verdict_log  # noqa: E402


class SpillGuardMiddleware(AgentMiddleware):
    """Apply ``policy`` to every model answer of an agent.

    Args:
        policy: ``Flag()`` (default), ``Abstain(...)``, ``Retry(...)``, ``Raise()``.
        log: review log (path or sink) for the final verdicts; ``log_all`` logs passed ones too.
        tags: written with each logged verdict.
        metrics: count each final decision in Prometheus metrics (``True``, a ``CollectorRegistry``
            or a ``VerdictMetrics``).
        on_log_error: ``"raise"`` (default) or ``"warn"`` when the log cannot record a verdict.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        log: Any = None,
        log_all: bool = False,
        tags: tuple[str, ...] = ("agent",),
        metrics: Any = None,
        on_log_error: str = "raise",
    ):
        super().__init__()
        if policy is not None and not isinstance(policy, Policy):
            raise InvalidParameterError(
                f"policy must be Flag(), Abstain(...), Retry(...) or Raise() from spill_guard.policy, got {policy!r}."
            )
        self.policy = policy if policy is not None else Flag()
        self.metrics = resolve_metrics(metrics)
        self.recorder = verdict_log(log, log_all=log_all, on_log_error=on_log_error, metrics=self.metrics)
        self.sink = self.recorder.sink
        self.log_all = log_all
        self.tags = tuple(tags)
        self.verdicts: list[Verdict] = []  # final verdicts, in order (list.append is atomic)

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        first = self._candidate(handler(request), "greedy")
        decision = decide(self.policy, first, lambda settings: self._candidate(handler(request), settings.name))
        return self._finish(decision)

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        first = self._candidate(await handler(request), "greedy")

        async def again(settings: Any) -> Candidate:
            return self._candidate(await handler(request), settings.name)

        return self._finish(await adecide(self.policy, first, again))

    def _candidate(self, response: Any, strategy: str) -> Candidate:
        if isinstance(response, AIMessage):  # a handler may return the bare message
            response = ModelResponse(result=[response])
        message = _answer_message(response)
        verdict = verdict_of(message) if message is not None else None
        if verdict is None:
            raise NoSpillReportError(
                "the agent's model returned no spill report; build the agent with a SpillChatModel "
                "(spill_guard_langchain.SpillChatModel) as its model."
            )
        if strategy == "greedy" and verdict.attempts:
            strategy = verdict.attempts[0].strategy
        return candidate_from(verdict, response, strategy)

    def _finish(self, decision: Any) -> ModelResponse:
        response, _ = decision.chosen.payload
        verdict = final_verdict(decision)
        self.recorder.record(verdict, tags=self.tags)
        self.verdicts.append(verdict)
        if decision.action is Action.RAISED:
            raise HallucinationDetected(verdict)
        message = _answer_message(response)
        assert message is not None  # _candidate refused a response without an AI message
        metadata = dict(message.response_metadata)
        metadata[REPORT_KEY] = {**metadata.get(REPORT_KEY, {}), "verdict": verdict.model_dump(mode="json")}
        content = decision.shown if decision.action is Action.ABSTAINED else message.content
        replaced = AIMessage(
            content=content, response_metadata=metadata, usage_metadata=message.usage_metadata, id=message.id
        )
        result = [replaced if m is message else m for m in response.result]
        return ModelResponse(result=result, structured_response=response.structured_response)


def _answer_message(response: Any) -> AIMessage | None:
    """The last AI message of a model response (or the message itself)."""
    if isinstance(response, AIMessage):
        return response
    for message in reversed(getattr(response, "result", None) or []):
        if isinstance(message, AIMessage):
            return message
    return None
