"""``GuardedQueryEngine``: any LlamaIndex query engine, with the guard's policy on its answers.

The wrapped engine retrieves and synthesises as usual; the answer then goes through the
policy (flag / retry / abstain / raise). The response keeps the engine's ``source_nodes``
and gets the verdict in ``response.metadata["spill_guard"]``; ``str(response)`` is what the
user should see (the abstention reply when the guard abstained).
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import AsyncStreamingResponse, Response, StreamingResponse
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import QueryBundle

from spill_guard import SpillGuard
from spill_guard.errors import InvalidParameterError
from spill_guard.policy.base import Policy
from spill_guard_llama_index.enforce import enforce, with_report
from spill_guard_llama_index.generation import collect
from spill_guard_llama_index.huggingface_llm import HuggingFaceLLMScorer, scorer_of
from spill_guard_llama_index.llm import SpillLLM


class GuardedStreamingError(InvalidParameterError):
    """A guarded engine was given a streaming engine: a policy needs the whole answer first."""


def _engine_parts(llm: Any, guard: SpillGuard | None, policy: Policy | None) -> tuple[SpillGuard, Policy]:
    """The guard and policy of an engine whose LLM is ``llm``: a SpillLLM, or an instrumented
    HuggingFaceLLM (or its :class:`HuggingFaceLLMScorer`)."""
    owner = llm
    if llm is not None and not isinstance(llm, SpillLLM):
        owner = llm if isinstance(llm, HuggingFaceLLMScorer) else scorer_of(llm)
        if owner is None:
            raise InvalidParameterError(
                f"llm must be the engine's SpillLLM, or a HuggingFaceLLM scored with instrument(llm, ...) "
                f"(or that scorer), got a {type(llm).__name__} that is neither."
            )
    guard = guard if guard is not None else (owner.guard if owner is not None else None)
    if guard is None:
        raise InvalidParameterError(
            "pass llm= (the engine's SpillLLM) or guard= (a SpillGuard to judge another LLM's answers)."
        )
    if policy is not None and not isinstance(policy, Policy):
        raise InvalidParameterError(f"policy must be Flag(), Abstain(...), Retry(...) or Raise(), got {policy!r}.")
    return guard, policy if policy is not None else guard.policy


class GuardedQueryEngine(BaseQueryEngine):
    """Wrap ``query_engine`` (built with ``llm=`` this SpillLLM) and enforce a policy.

    Args:
        query_engine: e.g. ``index.as_query_engine(llm=llm)``; must not stream.
        llm: the SpillLLM the engine uses (its guard supplies threshold, policy and log), or
            an unmodified ``HuggingFaceLLM`` scored with :func:`instrument` (or its scorer):
            its answers are judged as they were scored, and ``Retry`` re-asks that LLM the
            attempt's conversation (its scorer's ``reask``).
        guard: judge with this guard instead (needed when the engine's LLM is not a SpillLLM:
            answers are then scored teacher-forced and cannot be retried).
        policy: override the guard's policy.
    """

    def __init__(
        self,
        query_engine: BaseQueryEngine,
        llm: Any = None,
        *,
        guard: SpillGuard | None = None,
        policy: Policy | None = None,
        callback_manager: CallbackManager | None = None,
    ):
        if not isinstance(query_engine, BaseQueryEngine):
            raise InvalidParameterError(f"query_engine must be a LlamaIndex BaseQueryEngine, got {query_engine!r}.")
        self.query_engine = query_engine
        self.llm = llm
        self.guard, self.policy = _engine_parts(llm, guard, policy)
        super().__init__(callback_manager=callback_manager or query_engine.callback_manager)

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {"query_engine": self.query_engine}

    def _guarded(self, query: QueryBundle, response: Any, generations: list) -> Response:
        if isinstance(response, (StreamingResponse, AsyncStreamingResponse)):
            raise GuardedStreamingError(
                "the wrapped query engine streams; a policy needs the whole answer before it can decide. "
                "Build it with streaming=False (token streaming with per-token energies: SpillLLM.stream_complete)."
            )
        verdict = enforce(
            self.llm,
            self.guard,
            self.policy,
            query=query.query_str,
            answer=str(response),
            generations=generations,
            source_nodes=response.source_nodes,
        )
        return Response(
            response=verdict.answer,
            source_nodes=list(response.source_nodes),
            metadata=with_report(response.metadata, verdict),
        )

    def _query(self, query_bundle: QueryBundle) -> Response:
        with collect() as collector:
            response = self.query_engine.query(query_bundle)
        return self._guarded(query_bundle, response, collector.generations)

    async def _aquery(self, query_bundle: QueryBundle) -> Response:
        with collect() as collector:
            response = await self.query_engine.aquery(query_bundle)
        # Retries run the model: off the event loop, in this task's context.
        return await asyncio.to_thread(self._guarded, query_bundle, response, collector.generations)
