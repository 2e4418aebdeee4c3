"""The flow both completion routes share: submit the request's rows to the batcher, then answer
with one JSON body or an SSE stream. The routes only say how their JSON looks (a :class:`Shape`).

Streaming: each row's tokens are pushed from the worker thread onto the request's asyncio
queue as soon as the capture knows their energies; the verdict arrives with the last chunk
of each choice. Under ``Raise`` a non-streaming request gets a 422 ``hallucination_detected``
error; a stream (whose 200 status is already sent) ends with an error event instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from spill_guard.guard.verdict import HallucinationDetected
from spill_guard.models.stops import StreamedText
from spill_guard.policy.base import Action
from spill_guard.serving.batching import StagedFinish
from spill_guard.serving.engine import ChoiceResult, Decided, Engine, Prepared
from spill_guard.serving.errors import OpenAIError
from spill_guard.serving.generation import StreamToken
from spill_guard.serving.sse import DONE, event
from spill_guard.serving.verdicts import stream_token_object, verdict_object

_END = object()


class Shape(Protocol):
    """How one route's JSON looks; ``choice`` runs in the worker thread (it may need the model)."""

    object_name: str
    chunk_object_name: str

    def choice(self, result: ChoiceResult, guard_object: dict[str, Any] | None) -> dict[str, Any]: ...

    def delta(
        self,
        index: int,
        text: str,
        *,
        first: bool,
        logprob: tuple[str, float] | None,
        finish_reason: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]: ...


def _usage(prepared: Prepared, results: list[ChoiceResult]) -> dict[str, int]:
    prompt = sum(len(p.ids) for p in prepared.prompts)
    completion = sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _Finish(StagedFinish):
    """One request's finish (worker thread): decide its choices, then (after the batch's one
    review-log write) settle ``on_log_error`` and build the choices' JSON."""

    def __init__(self, dispatcher: Dispatcher, prepared: Prepared, shape: Shape, token_scores: bool):
        self.engine, self.metrics = dispatcher.engine, dispatcher.metrics
        self.prepared, self.shape, self.token_scores = prepared, shape, token_scores
        self.decided: Decided | None = None

    def decide(self, outcomes: list[Any]) -> list[Any]:
        self.decided = self.engine.decide(self.prepared, outcomes)
        return self.decided.entries

    def write(self, entries: list[Any]) -> list[Any]:
        return self.engine.write_log(entries)

    def complete(self, written: list[Any]) -> tuple[list[ChoiceResult], list[dict[str, Any]]]:
        assert self.decided is not None, "complete() before decide()"
        results = self.engine.complete(self.decided, written)
        bodies = []
        for r in results:
            guard = None
            if r.verdict is not None:
                guard = verdict_object(r.verdict, stop_sequence=r.stop_sequence, token_scores=self.token_scores)
                self.metrics.observe_verdict(r.verdict, tokens=False)  # tokens: counted below, guarded or not
            self.metrics.tokens.inc(r.completion_tokens)
            bodies.append(self.shape.choice(r, guard))
        return results, bodies


class Dispatcher:
    def __init__(self, engine: Engine, batcher: Any, metrics: Any):
        self.engine = engine
        self.batcher = batcher
        self.metrics = metrics

    def _finisher(self, prepared: Prepared, shape: Shape, token_scores: bool) -> Callable[[list[Any]], Any]:
        return _Finish(self, prepared, shape, token_scores)

    def _raised(self, results: list[ChoiceResult], bodies: list[dict[str, Any]]) -> OpenAIError | None:
        for r in results:
            if r.verdict is not None and r.verdict.action is Action.RAISED:
                message = HallucinationDetected(r.verdict).summary
                message += " The verdict is in error.spill_guard; the answer is in the review log."
                return OpenAIError(
                    422,
                    message,
                    code="hallucination_detected",
                    extra={"spill_guard": [b.get("spill_guard") for b in bodies]},
                )
        return None

    def _header(self, prepared: Prepared, object_name: str) -> dict[str, Any]:
        return {
            "id": f"{'chatcmpl' if 'chat' in object_name else 'cmpl'}-{prepared.request_id}",
            "object": object_name,
            "created": int(time.time()),
            "model": self.engine.model_name,
        }

    async def complete(self, prepared: Prepared, shape: Shape, *, token_scores: bool) -> dict[str, Any]:
        started = time.perf_counter()
        results, bodies = await self.batcher.submit(
            prepared.key, prepared.rows, self._finisher(prepared, shape, token_scores)
        )
        self._throughput(results, started)
        raised = self._raised(results, bodies)
        if raised is not None:
            raise raised
        return {
            **self._header(prepared, shape.object_name),
            "choices": bodies,
            "usage": _usage(prepared, results),
            "system_fingerprint": None,
        }

    def _throughput(self, results: list[ChoiceResult], started: float) -> None:
        elapsed = time.perf_counter() - started
        tokens = sum(r.completion_tokens for r in results)
        if elapsed > 0 and tokens:
            self.metrics.tokens_per_second.observe(tokens / elapsed)

    async def stream(
        self, prepared: Prepared, shape: Shape, *, token_scores: bool, logprobs: bool, include_usage: bool
    ) -> Any:
        """An async iterator of SSE bytes (for a StreamingResponse)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        visible = self.engine.streams_text

        def forward(index: int) -> Callable[[StreamToken], None]:
            def on_token(token: StreamToken) -> None:  # worker thread -> the event loop's queue
                loop.call_soon_threadsafe(queue.put_nowait, (index, token))

            return on_token

        for index, row in enumerate(prepared.rows):
            row.on_token = forward(index)
        started = time.perf_counter()
        task = asyncio.ensure_future(
            self.batcher.submit(prepared.key, prepared.rows, self._finisher(prepared, shape, token_scores))
        )
        task.add_done_callback(lambda _: queue.put_nowait(_END))
        header = self._header(prepared, shape.chunk_object_name)
        return self._events(prepared, shape, header, queue, task, visible, logprobs, include_usage, started)

    async def _events(
        self,
        prepared: Prepared,
        shape: Shape,
        header: dict[str, Any],
        queue: asyncio.Queue,
        task: asyncio.Future,
        visible: bool,
        logprobs: bool,
        include_usage: bool,
        started: float,
    ) -> Any:
        texts = [StreamedText(prepared.stops) for _ in prepared.rows]
        first = [True] * len(prepared.rows)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                index, token = item
                yield event(
                    {
                        **header,
                        "choices": [self._token_delta(shape, index, token, texts[index], first, visible, logprobs)],
                    }
                )
            try:
                results, bodies = task.result()
            except OpenAIError as exc:
                yield event(exc.body())
                yield DONE
                return
            self._throughput(results, started)
            for result, body in zip(results, bodies):
                shown = texts[result.index].released if visible else 0
                tail = result.text[shown:] if not result.hidden or result.verdict.action is Action.ABSTAINED else ""
                extra = {"spill_guard": body.get("spill_guard")}
                if not visible and "logprobs" in body:
                    extra["logprobs"] = body["logprobs"]
                yield event(
                    {
                        **header,
                        "choices": [
                            shape.delta(
                                result.index,
                                tail,
                                first=first[result.index],
                                logprob=None,
                                finish_reason=result.finish_reason,
                                extra=extra,
                            )
                        ],
                    }
                )
            raised = self._raised(results, bodies)
            if raised is not None:
                yield event(raised.body())
            elif include_usage:
                yield event({**header, "choices": [], "usage": _usage(prepared, results)})
            yield DONE
        except asyncio.CancelledError:  # the client went away; the batch finishes and is logged regardless
            raise

    def _token_delta(
        self,
        shape: Shape,
        index: int,
        token: StreamToken,
        text: StreamedText,
        first: list[bool],
        visible: bool,
        logprobs: bool,
    ) -> dict[str, Any]:
        piece = text.push(token.text) if visible else ""
        lp = None
        if visible and logprobs and token.logprob is not None and text.matched is None:
            lp = (token.text, token.logprob)
        guard = None
        if self.engine.scoring:
            guard = {"token": stream_token_object(token, hidden=not visible)}
        delta = shape.delta(index, piece, first=first[index], logprob=lp, extra={"spill_guard": guard})
        first[index] = False
        return delta
