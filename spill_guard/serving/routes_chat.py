"""``POST /v1/chat/completions``: the model's chat template over the messages as given."""

from __future__ import annotations

from typing import Any

from spill_guard.serving.dispatch import Dispatcher
from spill_guard.serving.engine import ChoiceResult, Engine
from spill_guard.serving.errors import OpenAIError
from spill_guard.serving.logprobs import chat_logprobs
from spill_guard.serving.schemas import ChatCompletionRequest
from spill_guard.serving.sse import STREAM_HEADERS


class ChatShape:
    object_name = "chat.completion"
    chunk_object_name = "chat.completion.chunk"

    def __init__(self, engine: Engine, logprobs: bool, top: int):
        self.engine, self.logprobs, self.top = engine, logprobs, top

    def choice(self, result: ChoiceResult, guard_object: dict[str, Any] | None) -> dict[str, Any]:
        logprobs = None
        if self.logprobs and result.scored is not None and not result.hidden:
            logprobs = chat_logprobs(self.engine.model, result.scored, len(result.text), self.top).model_dump()
        return {
            "index": result.index,
            "message": {"role": "assistant", "content": result.text, "refusal": None},
            "finish_reason": result.finish_reason,
            "logprobs": logprobs,
            "spill_guard": guard_object,
        }

    def delta(
        self,
        index: int,
        text: str,
        *,
        first: bool,
        logprob: tuple[str, float] | None,
        finish_reason: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
        lp = None
        if logprob is not None:
            token, value = logprob
            lp = {
                "content": [{"token": token, "logprob": value, "bytes": list(token.encode()), "top_logprobs": []}],
                "refusal": None,
            }
        out = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish_reason}
        out.update(extra or {})
        return out


def messages_as_dicts(request: ChatCompletionRequest) -> list[dict[str, str]]:
    """Role/content dicts for the chat template; ``developer`` is OpenAI's newer name for ``system``."""
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in request.messages]


def add_chat_route(app: Any, engine: Engine, dispatcher: Dispatcher) -> None:
    from fastapi.responses import JSONResponse, StreamingResponse

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        engine.require_ready()
        engine.check_model(body.model)
        top = body.top_logprobs or 0
        if top and not body.logprobs:
            raise OpenAIError(400, "top_logprobs needs logprobs: true.", param="top_logprobs")
        if body.logprobs and not engine.scoring:
            raise OpenAIError(400, "logprobs need scoring on; this server runs with --no-guard.", param="logprobs")
        if top:
            engine.require_top_logprobs("top_logprobs")
        if body.stream and top:
            raise OpenAIError(
                400,
                "top_logprobs are not available when streaming (they need a second pass after the "
                "answer); use stream: false, or logprobs: true without top_logprobs.",
                param="top_logprobs",
            )
        if (
            body.max_tokens is not None
            and body.max_completion_tokens is not None
            and body.max_tokens != body.max_completion_tokens
        ):
            raise OpenAIError(
                400,
                f"max_tokens={body.max_tokens} and max_completion_tokens={body.max_completion_tokens} "
                "disagree; send one of them.",
                param="max_completion_tokens",
            )
        prompt = engine.chat_prompt(messages_as_dicts(body))
        prepared = engine.prepare("chat", body, [prompt], body.max_completion_tokens or body.max_tokens)
        shape = ChatShape(engine, body.logprobs, top)
        token_scores = bool(body.spill_guard and body.spill_guard.token_scores)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = await dispatcher.stream(
                prepared, shape, token_scores=token_scores, logprobs=body.logprobs, include_usage=include_usage
            )
            return StreamingResponse(events, media_type="text/event-stream", headers=STREAM_HEADERS)
        return JSONResponse(await dispatcher.complete(prepared, shape, token_scores=token_scores))
