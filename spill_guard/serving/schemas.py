"""Request and response bodies in OpenAI's shapes (chat completions, completions, models).

Requests accept unknown fields (clients such as LangChain send extras), but refuse the ones
that would change the answer in ways this server does not implement (tools, logit bias,
penalties, echo ...), with a message naming the field. ``spill_guard`` is this server's own
request option; every choice of a response carries a ``spill_guard`` verdict object.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spill_guard.models.seeding import check_seed


class SpillGuardOptions(BaseModel):
    """The request's ``spill_guard`` object (``extra_body={"spill_guard": {...}}`` in the openai SDK)."""

    model_config = ConfigDict(extra="forbid")

    token_scores: bool = Field(False, description="include each answer token's spilled energy Δ in the verdict")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _Generation(BaseModel):
    """Options shared by both completion routes."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    seed: int | None = Field(None, description="an integer from 0 to 2**63 - 1 (models.seeding.SEED_MIN .. SEED_MAX)")
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    spill_guard: SpillGuardOptions | None = None

    #: Fields accepted only at their neutral value: (name, neutral values, why).
    NEUTRAL: ClassVar[tuple[tuple[str, tuple[Any, ...], str], ...]] = (
        ("presence_penalty", (None, 0, 0.0), "penalties are not supported; remove it or send 0"),
        ("frequency_penalty", (None, 0, 0.0), "penalties are not supported; remove it or send 0"),
        ("logit_bias", (None, {}), "logit_bias is not supported; remove it"),
    )

    @field_validator("seed")
    @classmethod
    def _seed_in_range(cls, seed: int | None) -> int | None:
        return check_seed(seed)  # the library's bound: torch cannot seed past 64 bits

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]

    def unsupported(self) -> tuple[str, str] | None:
        """``(field, message)`` of the first option this server refuses, or ``None``."""
        for name, neutral, why in self.NEUTRAL:
            value = getattr(self, name, None) if name in type(self).model_fields else (self.model_extra or {}).get(name)
            if value not in neutral:
                return name, f"{name}={value!r}: {why}."
        return None


class ChatCompletionRequest(_Generation):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    NEUTRAL: ClassVar[tuple[tuple[str, tuple[Any, ...], str], ...]] = _Generation.NEUTRAL + (
        ("tools", (None, []), "tool calling is not supported; remove tools"),
        ("tool_choice", (None, "none"), "tool calling is not supported; remove tool_choice"),
        ("functions", (None, []), "function calling is not supported; remove functions"),
        ("function_call", (None, "none"), "function calling is not supported; remove function_call"),
        ("response_format", (None, {"type": "text"}), "only text responses are supported; remove response_format"),
    )


class CompletionRequest(_Generation):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    NEUTRAL: ClassVar[tuple[tuple[str, tuple[Any, ...], str], ...]] = _Generation.NEUTRAL + (
        ("echo", (False,), "echo is not supported; remove it"),
        ("suffix", (None, ""), "suffix (insertion) is not supported; remove it"),
        ("best_of", (None, 1), "best_of is not supported; use n"),
    )


# -- responses -------------------------------------------------------------------------------
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None = None
    text_offset: list[int]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: ChatLogprobs | None = None
    spill_guard: dict[str, Any] | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: CompletionLogprobs | None = None
    spill_guard: dict[str, Any] | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "spill-guard"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
