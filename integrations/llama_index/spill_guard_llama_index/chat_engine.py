"""``GuardedChatEngine``: any LlamaIndex chat engine, with the guard's policy on each reply.

After the wrapped engine answers, the policy decides; when the user is shown something else
than what the engine wrote into its memory (a retried answer, an abstention), the last
assistant message of that memory is replaced, so the next turn builds on what the user saw.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine.types import AgentChatResponse, BaseChatEngine, StreamingAgentChatResponse

from spill_guard import SpillGuard
from spill_guard.errors import InvalidParameterError
from spill_guard.guard.verdict import Verdict
from spill_guard.policy.base import Policy
from spill_guard_llama_index.enforce import enforce, with_report
from spill_guard_llama_index.generation import collect
from spill_guard_llama_index.query_engine import GuardedStreamingError, _engine_parts


class GuardedChatEngine(BaseChatEngine):
    """Wrap ``chat_engine`` (built with ``llm=`` this SpillLLM) and enforce a policy per reply.

    Args:
        chat_engine: e.g. ``index.as_chat_engine(chat_mode="context", llm=llm)``.
        llm, guard, policy: as for :class:`~spill_guard_llama_index.GuardedQueryEngine` (a SpillLLM,
            or an instrumented HuggingFaceLLM / its scorer).
    """

    def __init__(
        self,
        chat_engine: BaseChatEngine,
        llm: Any = None,
        *,
        guard: SpillGuard | None = None,
        policy: Policy | None = None,
    ):
        if not isinstance(chat_engine, BaseChatEngine):
            raise InvalidParameterError(f"chat_engine must be a LlamaIndex BaseChatEngine, got {chat_engine!r}.")
        self.chat_engine = chat_engine
        self.llm = llm
        self.guard, self.policy = _engine_parts(llm, guard, policy)

    @property
    def chat_history(self) -> list[ChatMessage]:
        return self.chat_engine.chat_history

    def reset(self) -> None:
        self.chat_engine.reset()

    def _guarded(self, message: str, response: AgentChatResponse, generations: list) -> AgentChatResponse:
        verdict = enforce(
            self.llm,
            self.guard,
            self.policy,
            query=message,
            answer=response.response,
            generations=generations,
            source_nodes=response.source_nodes,
        )
        self._rewrite_memory(response.response, verdict)
        return AgentChatResponse(
            response=verdict.answer,
            sources=list(response.sources),
            source_nodes=list(response.source_nodes),
            metadata=with_report(response.metadata, verdict),
        )

    def _rewrite_memory(self, written: str, verdict: Verdict) -> None:
        """Make the memory's last assistant turn what the user was shown."""
        memory = getattr(self.chat_engine, "_memory", None)
        if verdict.answer == written or memory is None or not hasattr(memory, "get_all"):
            return
        history = list(memory.get_all())
        for i in range(len(history) - 1, -1, -1):
            if history[i].role == MessageRole.ASSISTANT:
                history[i] = ChatMessage(role=MessageRole.ASSISTANT, content=verdict.answer)
                memory.set(history)
                return

    def chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        with collect() as collector:
            # BaseChatEngine.chat is typed with the streaming union; chat() answers whole (stream_chat streams)
            response = cast(AgentChatResponse, self.chat_engine.chat(message, chat_history))
        return self._guarded(message, response, collector.generations)

    async def achat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        with collect() as collector:
            response = cast(AgentChatResponse, await self.chat_engine.achat(message, chat_history))  # as in chat()
        return await asyncio.to_thread(self._guarded, message, response, collector.generations)

    # A policy decides on the complete reply, so a guarded reply cannot be streamed.
    def stream_chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> StreamingAgentChatResponse:
        raise _no_streaming()

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        raise _no_streaming()


def _no_streaming() -> GuardedStreamingError:
    return GuardedStreamingError(
        "a guarded chat reply is decided once it is complete, so it cannot stream; use chat()/achat(), "
        "or SpillLLM.stream_chat for raw token streaming with per-token energies."
    )
