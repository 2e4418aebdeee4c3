"""``POST /v1/completions``: raw text prompts (no template), one or several per request."""

from __future__ import annotations

from typing import Any

from spill_guard.serving.dispatch import Dispatcher
from spill_guard.serving.engine import ChoiceResult, Engine
from spill_guard.serving.errors import OpenAIError
from spill_guard.serving.logprobs import completion_logprobs
from spill_guard.serving.schemas import CompletionRequest
from spill_guard.serving.sse import STREAM_HEADERS


class CompletionShape:
    object_name = "text_completion"
    chunk_object_name = "text_completion"

    def __init__(self, engine: Engine, logprobs: int | None):
        self.engine, self.logprobs = engine, logprobs

    def choice(self, result: ChoiceResult, guard_object: dict[str, Any] | None) -> dict[str, Any]:
        logprobs = None
        if self.logprobs is not None and result.scored is not None and not result.hidden:
            logprobs = completion_logprobs(
                self.engine.model, result.scored, len(result.text), self.logprobs
            ).model_dump()
        return {
            "index": result.index,
            "text": result.text,
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
        lp = None
        if logprob is not None:
            lp = {"tokens": [logprob[0]], "token_logprobs": [logprob[1]], "top_logprobs": None}
        out = {"index": index, "text": text, "logprobs": lp, "finish_reason": finish_reason}
        out.update(extra or {})
        return out


def add_completions_route(app: Any, engine: Engine, dispatcher: Dispatcher) -> None:
    from fastapi.responses import JSONResponse, StreamingResponse

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        engine.require_ready()
        engine.check_model(body.model)
        if body.logprobs is not None and not engine.scoring:
            raise OpenAIError(400, "logprobs need scoring on; this server runs with --no-guard.", param="logprobs")
        if body.logprobs:
            engine.require_top_logprobs("logprobs")
        if body.stream and body.logprobs:
            raise OpenAIError(
                400,
                "logprobs > 0 (top alternatives) are not available when streaming; use logprobs: 0 or stream: false.",
                param="logprobs",
            )
        texts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not texts:
            raise OpenAIError(400, "prompt is an empty list; send a string or a list of strings.", param="prompt")
        prompts = [engine.text_prompt(t) for t in texts]
        prepared = engine.prepare("completions", body, prompts, body.max_tokens)
        shape = CompletionShape(engine, body.logprobs)
        token_scores = bool(body.spill_guard and body.spill_guard.token_scores)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = await dispatcher.stream(
                prepared,
                shape,
                token_scores=token_scores,
                logprobs=body.logprobs is not None,
                include_usage=include_usage,
            )
            return StreamingResponse(events, media_type="text/event-stream", headers=STREAM_HEADERS)
        return JSONResponse(await dispatcher.complete(prepared, shape, token_scores=token_scores))
