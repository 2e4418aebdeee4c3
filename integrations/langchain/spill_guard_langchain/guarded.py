"""``SpillGuardedRunnable``: apply a policy (flag / retry / abstain / raise) to a chain's output.

The chain is any runnable whose answer comes from a :class:`SpillChatModel` (e.g.
``prompt | model | StrOutputParser()``). Each call runs the chain with a private callback
that catches the model's verdict; the policy then decides. A retry re-runs the whole chain
with the retry's sampling (or re-prompt) settings, which reach the model through a context
variable (see :mod:`spill_guard_langchain.attempt`). An abstention replaces the answer in
the chain's own output type (a string, a message, or one key of a dict output).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config, patch_config

from spill_guard.errors import InvalidParameterError, SpillGuardError
from spill_guard.guard import HallucinationDetected, Verdict
from spill_guard.observability.verdict_metrics import resolve_metrics
from spill_guard.policy import Action, Candidate, Flag, Policy
from spill_guard_langchain.attempt import AttemptSettings
from spill_guard_langchain.decisions import adecide, candidate_from, decide, final_verdict
from spill_guard_langchain.report import REPORT_KEY, verdict_of
from spill_guard_langchain.review_sink import run_metadata, verdict_log


class NoSpillReportError(SpillGuardError, RuntimeError):
    """The wrapped chain ran, but no SpillChatModel answered inside it."""


@dataclass(frozen=True)
class GuardedOutput:
    """``include_verdict=True`` results: the (possibly replaced) chain output and its verdict."""

    output: Any
    verdict: Verdict


class _VerdictCollector(BaseCallbackHandler):
    """Per-call handler: the generations of one chain run, read for verdicts once the run is over.

    Read late on purpose: a drop-in :class:`SpillCallbackHandler` (``model=ChatHuggingFace``)
    attaches its verdict to the generation in its own ``on_llm_end``, which may run after
    this handler's (a model's own callbacks come after the inherited ones).
    """

    raise_error = True  # a failure here must surface: the guard's decision depends on it

    def __init__(self) -> None:
        super().__init__()
        self.generations: list[Any] = []

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        for generations in response.generations:
            self.generations.extend(generations)

    @property
    def verdicts(self) -> list[Verdict]:
        return [v for v in map(verdict_of, self.generations) if v is not None]


class SpillGuardedRunnable(Runnable):
    """Wrap ``chain`` so ``policy`` acts on its answer.

    Args:
        chain: a runnable whose answer comes from a :class:`SpillChatModel`; when it calls
            the model several times, the last answer is the one judged.
        policy: ``Flag()`` (default), ``Abstain(...)``, ``Retry(...)``, ``Raise()``.
        log: review log (path or sink) for the final verdicts.
        log_all: log every verdict, not only flagged ones.
        include_verdict: return :class:`GuardedOutput` (output + verdict) instead of the output.
        output_key: for chains returning a dict, the key holding the answer (to replace it).
        metrics: count each final decision (its action: ``abstained`` ...) in Prometheus metrics:
            ``True`` (the default registry), a ``CollectorRegistry`` or a ``VerdictMetrics``.
        on_log_error: when the review log cannot record a verdict: ``"raise"`` (default) a
            ``VerdictNotLoggedError`` carrying it, or ``"warn"`` and return the output (as ``SpillGuard``).

    ``stream`` passes chunks through as they come under ``Flag()`` (the decision cannot change
    the text); under other policies the answer must be judged before anyone sees it, so the
    final output arrives as one chunk. Async calls run the chain natively async.
    """

    def __init__(
        self,
        chain: Runnable,
        policy: Policy | None = None,
        *,
        log: Any = None,
        log_all: bool = False,
        include_verdict: bool = False,
        output_key: str | None = None,
        metrics: Any = None,
        on_log_error: str = "raise",
    ):
        if not isinstance(chain, Runnable):
            raise InvalidParameterError(f"chain must be a LangChain Runnable (e.g. prompt | model), got {chain!r}.")
        if policy is not None and not isinstance(policy, Policy):
            raise InvalidParameterError(
                f"policy must be Flag(), Abstain(...), Retry(...) or Raise() from spill_guard.policy, got {policy!r}."
            )
        self.chain = chain
        self.policy = policy if policy is not None else Flag()
        self.metrics = resolve_metrics(metrics)
        self.recorder = verdict_log(log, log_all=log_all, on_log_error=on_log_error, metrics=self.metrics)
        self.sink = self.recorder.sink
        self.log_all = log_all
        self.include_verdict = include_verdict
        self.output_key = output_key

    @property
    def InputType(self) -> Any:  # noqa: N802 (LangChain's name)
        return self.chain.InputType

    # -- sync --------------------------------------------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config = ensure_config(config)
        first = self._attempt(input, config, None)
        decision = decide(self.policy, first, lambda settings: self._attempt(input, config, settings))
        return self._finish(decision, config)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        if not isinstance(self.policy, Flag) or self.include_verdict:
            yield self.invoke(input, config)
            return
        config = ensure_config(config)
        collector = _VerdictCollector()
        yield from self.chain.stream(input, _with_handler(config, collector))
        self._finish(decide(self.policy, self._candidate(collector, None, None), _no_retry), config)

    # -- async -------------------------------------------------------------------------------
    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config = ensure_config(config)
        first = await self._aattempt(input, config, None)
        decision = await adecide(self.policy, first, lambda settings: self._aattempt(input, config, settings))
        return self._finish(decision, config)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        if not isinstance(self.policy, Flag) or self.include_verdict:
            yield await self.ainvoke(input, config)
            return
        config = ensure_config(config)
        collector = _VerdictCollector()
        async for chunk in self.chain.astream(input, _with_handler(config, collector)):
            yield chunk
        self._finish(decide(self.policy, self._candidate(collector, None, None), _no_retry), config)

    # -- internals ---------------------------------------------------------------------------
    def _attempt(self, input: Any, config: RunnableConfig, settings: AttemptSettings | None) -> Candidate:
        collector = _VerdictCollector()
        output = self.chain.invoke(input, _with_handler(config, collector))
        return self._candidate(collector, output, settings)

    async def _aattempt(self, input: Any, config: RunnableConfig, settings: AttemptSettings | None) -> Candidate:
        collector = _VerdictCollector()
        output = await self.chain.ainvoke(input, _with_handler(config, collector))
        return self._candidate(collector, output, settings)

    def _candidate(self, collector: _VerdictCollector, output: Any, settings: AttemptSettings | None) -> Candidate:
        if not collector.verdicts:
            raise NoSpillReportError(
                f"the chain {self.chain.get_name()!r} produced no spill report: its answer must come from a "
                "SpillChatModel (spill_guard_langchain.SpillChatModel), e.g. prompt | SpillChatModel(...) | parser, "
                "or from a ChatHuggingFace / HuggingFacePipeline watched by SpillCallbackHandler(model=...) in the "
                "call's callbacks."
            )
        verdict = collector.verdicts[-1]
        strategy = (
            settings.name if settings is not None else verdict.attempts[0].strategy if verdict.attempts else "greedy"
        )
        return candidate_from(verdict, output, strategy)

    def _finish(self, decision: Any, config: RunnableConfig) -> Any:
        output, _ = decision.chosen.payload
        verdict = final_verdict(decision)
        self.recorder.record(verdict, tags=config.get("tags") or [], metadata=run_metadata(config.get("metadata")))
        if decision.action is Action.RAISED:
            raise HallucinationDetected(verdict)
        if decision.action is Action.ABSTAINED:
            output = self._replace(output, decision.shown, verdict)
        return GuardedOutput(output, verdict) if self.include_verdict else output

    def _replace(self, output: Any, reply: str, verdict: Verdict) -> Any:
        """The chain's output with its answer replaced by ``reply``, in the same type."""
        if isinstance(output, str):
            return reply
        if isinstance(output, BaseMessage):
            metadata = dict(output.response_metadata)
            if REPORT_KEY in metadata:
                metadata[REPORT_KEY] = {**metadata[REPORT_KEY], "verdict": verdict.model_dump(mode="json")}
            return AIMessage(content=reply, response_metadata=metadata, id=output.id)
        if isinstance(output, dict) and self.output_key is not None and self.output_key in output:
            return {**output, self.output_key: self._replace(output[self.output_key], reply, verdict)}
        if isinstance(output, dict):
            raise InvalidParameterError(
                f"the chain returns a dict with keys {sorted(output)}; pass output_key=<the key holding the answer> "
                "so an abstention can replace it."
            )
        if output is None:  # streamed under Flag: nothing to replace
            return output
        raise InvalidParameterError(
            f"cannot replace an answer of type {type(output).__name__}; end the chain with a StrOutputParser, "
            "a message, or a dict output with output_key=..."
        )


def _no_retry(settings: AttemptSettings) -> Candidate:
    raise InvalidParameterError("internal: a streamed Flag() run cannot retry.")  # Flag never regenerates


def _with_handler(config: RunnableConfig, handler: BaseCallbackHandler) -> RunnableConfig:
    """``config`` with ``handler`` added to its callbacks (a list or a manager), inherited by children."""
    callbacks = config.get("callbacks")
    if callbacks is None:
        merged: Any = [handler]
    elif isinstance(callbacks, list):
        merged = [*callbacks, handler]
    elif isinstance(callbacks, BaseCallbackManager):
        merged = callbacks.copy()
        merged.add_handler(handler, inherit=True)
    else:
        raise InvalidParameterError(f"config['callbacks'] must be a list or a callback manager, got {callbacks!r}.")
    return patch_config(config, callbacks=merged)
