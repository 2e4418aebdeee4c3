"""``SpillLLM``: a LlamaIndex LLM over a local :class:`~spill_guard.SpillModel`.

Every answer is scored from the raw logits of the same pass that generated it. Responses
carry, in LlamaIndex's own fields:

- ``text`` / ``message.content``: the model's answer, unchanged (an LLM does not enforce;
  the guarded engines in this package do);
- ``logprobs``: one ``[LogProb]`` per answer token (``log p`` of the emitted token, β = 1);
- ``additional_kwargs["spill_guard"]``: the JSON-ready verdict (risk score, threshold,
  flagged, per-token spilled energy, span); on chat responses also on ``message.additional_kwargs``;
- ``raw``: the :class:`~spill_guard.ScoredAnswer` itself (trace attached).

Each answer is also announced as a :class:`~spill_guard_llama_index.events.SpillScoredEvent`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, Iterator, Sequence
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    LogProb,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.llm import LLM
from pydantic import Field, PrivateAttr

from spill_guard import SpillGuard, SpillModel
from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.guard.dropin import resolve_guard
from spill_guard.guard.judge import Generated
from spill_guard.guard.stream import stream_generation
from spill_guard.guard.verdict import TokenEvent
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import Prompt
from spill_guard.policy import Flag
from spill_guard.report import ScoredAnswer, TokenRecord
from spill_guard_llama_index.events import emit
from spill_guard_llama_index.generation import Generation, Message, record

#: LlamaIndex roles mapped onto the three roles chat templates know.
_ROLE_MAP = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
}
#: Per-call generation options a caller may pass as ``llm.complete(prompt, **kwargs)``.
_CALL_OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_p", "seed")


def to_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    """LlamaIndex chat messages as ``{"role", "content"}`` dicts (tool/function turns refused)."""
    out: list[Message] = []
    for m in messages:
        role = _ROLE_MAP.get(m.role)
        if role is None:
            raise InvalidInputError(
                f"SpillLLM cannot take a {m.role.value!r} message (no tool calling in a local chat template); "
                "pass system/user/assistant messages only."
            )
        out.append({"role": role, "content": m.content or ""})
    return out


def token_logprobs(scored: ScoredAnswer) -> list[list[LogProb]]:
    """LlamaIndex ``logprobs``: per answer token, the emitted token's log-probability."""
    values = [float(v) for v in scored.trace.log_prob]
    return [
        [LogProb(token=_display(t), logprob=lp, bytes=list(t.text.encode("utf-8")))]
        for t, lp in zip(scored.tokens, values)
    ]


def _display(token: TokenRecord) -> str:
    """A special token's vocabulary form (it has no text), else its text."""
    if token.special:
        assert token.literal is not None  # ScoredAnswer sets literal on every special token
        return token.literal
    return token.text


class SpillLLM(LLM):
    """A local chat model whose every answer comes with its spilled-energy verdict.

    Args:
        guard: the :class:`~spill_guard.SpillGuard` whose model, threshold (calibration),
            spec and locator judge each answer; its policy and review log are used by the
            guarded engines. ``None``: ``SpillGuard(model)``.
        model: a :class:`~spill_guard.SpillModel` when no guard is given (``None``: the
            embedded SmolLM2-135M-Instruct).
        max_new_tokens: generation budget per answer (default: the guard's).
        metrics: Prometheus metrics for the guard built here (``True``, a ``CollectorRegistry`` or
            a ``VerdictMetrics``; ``pip install 'spill-guard[metrics]'``): each answer outside a
            guarded engine, and each engine decision, is counted once. With ``guard=``, give
            ``SpillGuard(..., metrics=...)`` instead.
    """

    max_new_tokens: int = Field(default=64, gt=0, description="tokens generated per answer at most")
    _guard: SpillGuard = PrivateAttr()

    def __init__(
        self,
        guard: SpillGuard | None = None,
        *,
        model: SpillModel | None = None,
        max_new_tokens: int | None = None,
        metrics: Any = None,
        **kwargs: Any,
    ):
        if model is not None and not isinstance(model, SpillModel):
            raise InvalidParameterError(f"model must be a spill_guard.SpillModel, got {model!r}.")
        # metrics belong to the guard: the guarded engines count their decisions through it.
        guard = resolve_guard(
            guard,
            who="SpillLLM",
            build=lambda: SpillGuard(model, metrics=metrics),
            other_rule_args={"metrics": metrics},
        )
        if model is not None and guard.model is not model:
            raise InvalidParameterError(
                "pass either guard= or model= (the guard already has a model), not two different models."
            )
        budget = max_new_tokens if max_new_tokens is not None else guard.max_new_tokens
        # pydantic: this subclass's own field; the base LLM __init__ signature does not list it
        super().__init__(max_new_tokens=budget, **kwargs)  # type: ignore[call-arg]
        self._guard = guard

    @classmethod
    def class_name(cls) -> str:
        return "SpillLLM"

    @property
    def guard(self) -> SpillGuard:
        return self._guard

    @property
    def spill_model(self) -> SpillModel:
        return self._guard.model

    @property
    def metadata(self) -> LLMMetadata:
        loaded = self.spill_model.loaded
        return LLMMetadata(
            context_window=loaded.context_window,
            num_output=self.max_new_tokens,
            is_chat_model=True,
            is_function_calling_model=False,
            model_name=loaded.name,
        )

    # -- generation ------------------------------------------------------------------------
    def generate(self, messages: Sequence[Message], *, strategy: str | None = None, **options: Any) -> Generation:
        """Answer ``messages`` (role/content dicts), score, judge, announce and record it.

        ``options`` are a LlamaIndex call's generation options (``max_new_tokens``, ``do_sample``,
        ``temperature``, ``top_p``, ``seed``), read once into :class:`GenerationParams`.
        """
        return self.generate_params(messages, self.params_of(options), strategy=strategy)

    def generate_params(
        self, messages: Sequence[Message], params: GenerationParams, *, strategy: str | None = None
    ) -> Generation:
        """:meth:`generate` with the params already made (what a guarded engine's retry calls)."""
        messages = tuple(dict(m) for m in messages)
        scored = self._scored(messages, params)
        return self.judge(messages, scored, strategy=strategy or params.strategy, params=params)

    def generate_rows_params(self, messages: Sequence[Message], params: Sequence[GenerationParams]) -> list[Generation]:
        """One answer to ``messages`` per ``params`` (a second opinion's samples), each judged and recorded as
        :meth:`generate_params` records one: in one batched call where the model's rows can each have their own
        seed (:attr:`rows_in_one_call`), else one call per answer; the answers are the same either way."""
        messages = tuple(dict(m) for m in messages)
        params = list(params)
        rows = self._guard.row_generator
        if rows is None:
            return [self.generate_params(messages, p) for p in params]
        made = rows(Prompt.for_chat(self.spill_model.tokenizer, list(messages)), params)
        return [self.judge(messages, g.scored, strategy=p.strategy, params=p) for g, p in zip(made, params)]

    @property
    def rows_in_one_call(self) -> bool:
        """Whether :meth:`generate_rows_params` draws its answers in one batched call (the model's backend has
        per-row seeds)."""
        return self._guard.row_generator is not None

    def params_of(self, options: dict[str, Any]) -> GenerationParams:
        """A call's options as :class:`GenerationParams` (unknown options refused, naming the accepted ones)."""
        unknown = sorted(set(options) - set(_CALL_OPTIONS))
        if unknown:
            raise InvalidParameterError(
                f"unknown generation option(s) {unknown}; SpillLLM accepts {list(_CALL_OPTIONS)}."
            )
        sample = bool(options.get("do_sample", False))
        return GenerationParams(
            max_new_tokens=options.get("max_new_tokens", self.max_new_tokens),
            temperature=float(options.get("temperature", 1.0)) if sample else 0.0,
            top_p=float(options.get("top_p", 1.0)),
            seed=options.get("seed"),
        )

    def judge(
        self,
        messages: Sequence[Message],
        scored: ScoredAnswer,
        *,
        strategy: str = "greedy",
        params: GenerationParams | None = None,
    ) -> Generation:
        """Apply the guard's threshold to ``scored``, emit the event, record the generation."""
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        verdict = self._guard.judge.decide(Generated(scored), question=question, policy=Flag(), strategy=strategy)
        generation = Generation(
            tuple(messages),
            question,
            scored,
            verdict,
            strategy,
            params if params is not None else GenerationParams(max_new_tokens=self.max_new_tokens),
        )
        emit(verdict, strategy=strategy, metrics=self._guard.metrics)
        record(generation)
        return generation

    def _stream(self, messages: Sequence[Message], **options: Any) -> Iterator[TokenEvent | Generation]:
        """Token events while generating, then the finished :class:`Generation`."""
        messages = [dict(m) for m in messages]
        params = self.params_of(options)
        items = stream_generation(
            lambda listener: self._scored(messages, params, listener), self.spill_model.tokenizer, self.spill_model.beta
        )
        for item in items:
            if isinstance(item, TokenEvent):
                yield item
            else:  # judged here, in the caller's context, so the caller's collector receives it
                yield self.judge(messages, item, strategy=params.strategy, params=params)

    def _scored(self, messages: Sequence[Message], params: GenerationParams, listener: Any = None) -> ScoredAnswer:
        """Generate and score without judging (a streaming worker thread's part); ``listener`` gets each TokenStep."""
        prompt = Prompt.for_chat(self.spill_model.tokenizer, list(messages))
        # The guard's generation: its capture, final step and early stop, as the library's answers.
        return self._guard.generate([prompt], params, listeners=[listener] if listener else [])[0].scored

    # -- response building ------------------------------------------------------------------
    def _prompt_messages(self, prompt: str, formatted: bool) -> list[Message]:
        if not formatted:
            assert self.completion_to_prompt is not None  # LLM's validators default it when None
            prompt = self.completion_to_prompt(prompt)
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": prompt}]

    @staticmethod
    def _completion(g: Generation) -> CompletionResponse:
        return CompletionResponse(
            text=g.scored.answer,
            logprobs=token_logprobs(g.scored),
            additional_kwargs={"spill_guard": g.verdict.model_dump(mode="json")},
            raw=g.scored,
        )

    @staticmethod
    def _chat(g: Generation) -> ChatResponse:
        report = {"spill_guard": g.verdict.model_dump(mode="json")}
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=g.scored.answer, additional_kwargs=report),
            logprobs=token_logprobs(g.scored),
            additional_kwargs=report,
            raw=g.scored,
        )

    def _completion_stream(self, messages: list[Message], options: dict[str, Any]) -> CompletionResponseGen:
        text = ""
        for item in self._stream(messages, **options):
            if isinstance(item, TokenEvent):
                if not item.text:
                    continue  # a special token or half a character: nothing to show yet
                text += item.text
                yield CompletionResponse(
                    text=text, delta=item.text, additional_kwargs={"spill_token": item.model_dump(mode="json")}
                )
            else:  # the last chunk: full answer, every logprob and the verdict
                final = self._completion(item)
                final.delta = final.text[len(text) :] if final.text.startswith(text) else ""
                yield final

    # -- LlamaIndex interface ------------------------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._completion(self.generate(self._prompt_messages(prompt, formatted), **kwargs))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return self._completion_stream(self._prompt_messages(prompt, formatted), kwargs)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(self.generate(to_messages(messages), **kwargs))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._chat_stream(to_messages(messages), kwargs)

    def _chat_stream(self, messages: list[Message], options: dict[str, Any]) -> ChatResponseGen:
        for chunk in self._completion_stream(messages, options):
            yield ChatResponse(
                message=ChatMessage(
                    role=MessageRole.ASSISTANT, content=chunk.text, additional_kwargs=chunk.additional_kwargs
                ),
                delta=chunk.delta,
                logprobs=chunk.logprobs,
                additional_kwargs=chunk.additional_kwargs,
                raw=chunk.raw,
            )

    # Async variants run the blocking model call in a worker thread (context copied, so a
    # guarded engine's collector still sees the generation) and never block the event loop.
    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        messages = self._prompt_messages(prompt, formatted)
        return self._completion(await asyncio.to_thread(self.generate, messages, **kwargs))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        converted = to_messages(messages)
        return self._chat(await asyncio.to_thread(self.generate, converted, **kwargs))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        return _async_iter(self._completion_stream(self._prompt_messages(prompt, formatted), kwargs))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        return _async_iter(self._chat_stream(to_messages(messages), kwargs))


_Item = TypeVar("_Item")


async def _async_iter(items: Iterator[_Item]) -> AsyncGenerator[_Item, None]:
    """Drive a blocking iterator from a worker thread, one item at a time."""
    while True:
        taken = await asyncio.to_thread(_take_one, items)
        if not taken:
            return
        yield taken[0]


def _take_one(items: Iterator[_Item]) -> list[_Item]:
    """The iterator's next item as a one-item list, or ``[]`` once it is exhausted."""
    return list(itertools.islice(items, 1))
