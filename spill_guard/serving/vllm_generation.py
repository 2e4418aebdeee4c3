"""The server's generation on vLLM: one ``AsyncVllmSpillModel`` call per row, vLLM batches them.

The transformers backend groups requests itself (:mod:`~spill_guard.serving.batching`) and
runs one batched ``generate`` in a worker thread. On vLLM, the engine's own continuous
batching does that: every row of a request is one coroutine
(``await model.generate_from_ids(...)``), any number in flight. :class:`VllmRunner` has the
batcher's interface (``start``, ``stop``, ``submit``, ``executor``), so the dispatcher, the
routes, the engine's guard decision and the JSON are the same code for both backends.

What differs:

- ``max_tokens`` and ``stop`` are vLLM ``SamplingParams`` fields (they do not touch logits).
  An answer cut by a stop string ends on a text token, so its z_(T+1) follow-up runs.
- A seeded request's rows use seeds ``seed, seed + 1, ...`` (vLLM seeds each request; one
  seed for all ``n`` rows would give ``n`` equal choices). The same seed repeats the answer.
- Per-token energies are fetched when a row is complete, so a stream's token chunks are
  sent once that row's answer is generated (``streams_during_generation = False``), each
  with its energies, then the verdict.
- The policy, verdict and review-log write run in a thread (they block on file or
  database I/O); a retry's regeneration from there is scheduled back onto the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from spill_guard.backends.base import TEACHER_FORCING, require
from spill_guard.backends.vllm.replay import replay_steps
from spill_guard.errors import InvalidInputError, InvalidParameterError, SpillGuardError
from spill_guard.models.stops import cut_at_stop
from spill_guard.serving.errors import OpenAIError
from spill_guard.serving.generation import Row, RowOutcome, Sampling, StreamListener
from spill_guard.spill_model import AsyncSpillModel, SpillModel

#: Threads that run the guard's decision and review-log writes of finished requests.
FINISH_THREADS = 4


class LoopBackend:
    """The guard's synchronous view of the server's async backend (vLLM's async engine).

    :class:`~spill_guard.SpillGuard` holds a :class:`~spill_guard.SpillModel`; this backend gives
    it the async backend's name, capabilities, model facts and betas, and generates by
    scheduling the async ``generate`` on the server's event loop from the calling thread (a
    policy's retry runs in a finish thread). It is not a subclass of anything: a facade holds it.
    """

    def __init__(self, async_model: Any):
        self.async_model = async_model
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the server starts

    @property
    def name(self) -> str:
        return str(self.async_model.backend.name)

    @property
    def capabilities(self) -> Any:
        return self.async_model.capabilities

    @property
    def loaded(self) -> Any:
        return self.async_model.loaded

    @property
    def betas(self) -> tuple[float, ...]:
        return tuple(self.async_model.betas)

    @property
    def beta(self) -> float:
        return float(self.async_model.beta)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: Any,
        *,
        listeners: Sequence[Any] = (),
        stop_hooks: Sequence[Any] = (),
        stats: str | None = "full",
        final_step: str = "always",
    ) -> list[Any]:
        if self.loop is None or not self.loop.is_running():
            raise InvalidParameterError(
                "this model generates through the server's event loop (an async backend); "
                "use SpillModel.load(..., backend=...) for synchronous generation."
            )
        coroutine = self.async_model.generate_params(
            prompts, params, listeners=listeners, stop_hooks=stop_hooks, stats=stats, final_step=final_step
        )
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def score(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[Any]:
        require(self, TEACHER_FORCING, "scoring an answer made elsewhere (score_ids)")
        raise AssertionError("unreachable: the async backend scores through its own facade")

    def close(self) -> None:
        self.async_model.close()

    def __repr__(self) -> str:
        return f"LoopBackend({self.async_model!r})"


def guard_model(async_model: Any) -> SpillModel:
    """A :class:`SpillModel` facade over ``async_model`` for the server's guard (see :class:`LoopBackend`)."""
    return SpillModel(LoopBackend(async_model), instruction=async_model.instruction, system=async_model.system)


def async_model_of(model: Any) -> Any:
    """The async facade behind a guard's model built by :func:`guard_model` (``None`` for any other model)."""
    backend = getattr(model, "backend", None)
    return backend.async_model if isinstance(backend, LoopBackend) else None


def build_vllm_guard(config: Any) -> Any:
    """Load an ``AsyncVllmSpillModel`` and build the :class:`SpillGuard` of ``config`` over it."""
    import os

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    model = AsyncSpillModel.load(
        config.model, backend=config.backend, dtype=config.dtype, engine_options=dict(config.engine_options)
    )
    try:
        return config.guard_over(guard_model(model))
    except BaseException:
        model.close()
        raise


class VllmRows:
    """Rows to scored :class:`RowOutcome` s on an ``AsyncVllmSpillModel`` (one coroutine per row)."""

    def __init__(self, guard: Any):
        self.guard = guard
        self.model = async_model_of(guard.model)

    async def generate(self, rows: Sequence[Row], sampling: Sampling) -> list[RowOutcome]:
        try:
            async with asyncio.TaskGroup() as group:  # one row failing cancels (and cleans up) the others
                tasks = [group.create_task(self._row(row, sampling, i)) for i, row in enumerate(rows)]
        except BaseExceptionGroup as group_error:
            raise _first_cause(group_error) from None
        return [t.result() for t in tasks]

    async def _row(self, row: Row, sampling: Sampling, index: int) -> RowOutcome:
        # vLLM seeds each request: n equal seeds would give n equal choices, so row i gets seed + i.
        params = sampling.params(row, seed_offset=index)
        try:
            [scored] = await self.model.generate_params(
                [row.prompt_ids], params, final_step=self.guard.final_step, stats=self.guard.capture_stats
            )
        except (InvalidParameterError, InvalidInputError) as exc:  # e.g. UnsupportedSamplingError
            raise OpenAIError(
                400, f"the vLLM backend cannot score this request: {exc}", code="unsupported_parameter"
            ) from exc
        if row.on_token is not None:
            self._replay(row, scored)
        return RowOutcome(
            answer_ids=list(scored.answer_ids),
            text=scored.answer,
            stopped_on_eos=scored.stopped_on_eos,
            stop_sequence=cut_at_stop(scored.answer, row.stops)[1],
            scored=scored,
        )

    def _replay(self, row: Row, scored: Any) -> None:
        """The row's stream chunks, token by token with their energies, once the answer is complete."""
        listener = StreamListener([row], self.model.tokenizer, self.guard.rule.spec.beta, lambda: [True])
        replay_steps([scored], [listener], self.model.loaded.pad_token_id)


def _first_cause(group: BaseExceptionGroup) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_cause(exc)
        return exc
    return SpillGuardError("vLLM generation failed")


class VllmRunner:
    """The :class:`~spill_guard.serving.batching.Batcher` interface over vLLM's own batching.

    ``submit(key, rows, finish)`` generates the rows on the event loop, then runs
    ``finish(outcomes)`` (the guard's decision and review-log write) in a thread, in the
    submitting request's context (its OpenTelemetry span). ``executor`` also loads the model.
    """

    def __init__(self, engine: Any):
        self.engine = engine
        self.rows: VllmRows | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=FINISH_THREADS, thread_name_prefix="spill-guard-finish"
        )
        engine.blocking_generate = self.generate_blocking  # a retry's regeneration, from a finish thread

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        return self._executor

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        backend = getattr(self.engine.model, "backend", None)
        if isinstance(backend, LoopBackend):
            backend.loop = self._loop  # the guard's own generation (a retry) is scheduled here

    async def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _rows(self) -> VllmRows:
        if self.rows is None:
            self.rows = VllmRows(self.engine.guard)
        return self.rows

    async def submit(self, key: Hashable, rows: Sequence[Row], finish: Callable[[list[Any]], Any]) -> Any:
        if self._loop is None:
            self.start()
        context = contextvars.copy_context()
        assert isinstance(key, tuple)  # PreparedRequest.key: (kind, Sampling, ...)
        outcomes = await self._rows().generate(rows, key[1])
        return await asyncio.get_running_loop().run_in_executor(self._executor, context.run, finish, outcomes)

    def generate_blocking(self, rows: list[Row], sampling: Sampling) -> list[RowOutcome]:
        """Generate from a thread (not the event loop's): scheduled on the loop, waited for here."""
        assert self._loop is not None, "the runner has not started"
        return asyncio.run_coroutine_threadsafe(self._rows().generate(rows, sampling), self._loop).result()
