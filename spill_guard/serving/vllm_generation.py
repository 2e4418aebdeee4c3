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
from typing import Any, Callable, Hashable, Sequence

from spill_guard.errors import InvalidInputError, InvalidParameterError, SpillGuardError
from spill_guard.serving.errors import OpenAIError
from spill_guard.serving.generation import Row, RowOutcome, Sampling, StreamListener
from spill_guard.serving.stops import cut_at_stop
from spill_guard.spill_model import SpillModel

#: Threads that run the guard's decision and review-log writes of finished requests.
FINISH_THREADS = 4


class VllmGuardModel(SpillModel):
    """The guard's view of an :class:`~spill_guard.backends.vllm.AsyncVllmSpillModel`.

    :class:`~spill_guard.SpillGuard` reads a model's name, tokenizer, betas and calibration
    from a :class:`SpillModel`; this one has them, and its generation goes through the
    server (``async_model``). Calling its synchronous generation directly is refused.
    """

    backend = "vllm"
    streams_during_generation = False

    def __init__(self, async_model: Any):
        others = tuple(b for b in async_model.betas if b != async_model.beta)
        super().__init__(async_model.loaded, beta=async_model.beta, extra_betas=others,
                         instruction=async_model.instruction, system=async_model.system)
        self.async_model = async_model

    def generate_from_ids(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidParameterError("this model generates through the vLLM server (AsyncVllmSpillModel); "
                                    "use VllmSpillModel.load(...) for synchronous generation.")

    def score_ids(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidParameterError("scoring an answer made elsewhere (teacher forcing) is not available on the "
                                    "vLLM backend; use SpillModel.load(...) (transformers).")


def build_vllm_guard(config: Any) -> Any:
    """Load an ``AsyncVllmSpillModel`` and build the :class:`SpillGuard` of ``config`` over it."""
    import os

    from spill_guard.backends.vllm import AsyncVllmSpillModel
    from spill_guard.backends.vllm.engine import require_vllm

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    require_vllm()
    model = AsyncVllmSpillModel.load(config.model, dtype=config.dtype, engine_options=dict(config.engine_options))
    try:
        return config.guard_over(VllmGuardModel(model))
    except BaseException:
        model.shutdown()
        raise


def is_vllm(source: Any) -> bool:
    """Whether ``create_app``'s argument (a GuardConfig, SpillGuard or SpillModel) runs on vLLM."""
    from spill_guard.serving.config import GuardConfig

    if isinstance(source, GuardConfig):
        return source.backend == "vllm"
    model = getattr(source, "model", source)
    if getattr(model, "backend", "transformers") != "vllm":
        return False
    if not isinstance(model, VllmGuardModel):
        raise InvalidParameterError(
            f"the server runs vLLM through its async engine; pass GuardConfig(backend='vllm', ...) or a SpillGuard "
            f"over VllmGuardModel(AsyncVllmSpillModel.load(...)), not {type(model).__name__} (offline vllm.LLM).")
    return True


class VllmRows:
    """Rows to scored :class:`RowOutcome` s on an ``AsyncVllmSpillModel`` (one coroutine per row)."""

    def __init__(self, guard: Any):
        self.guard = guard
        self.model = guard.model.async_model

    async def generate(self, rows: Sequence[Row], sampling: Sampling) -> list[RowOutcome]:
        try:
            async with asyncio.TaskGroup() as group:  # one row failing cancels (and cleans up) the others
                tasks = [group.create_task(self._row(row, sampling, i)) for i, row in enumerate(rows)]
        except BaseExceptionGroup as group_error:
            raise _first_cause(group_error) from None
        return [t.result() for t in tasks]

    async def _row(self, row: Row, sampling: Sampling, index: int) -> RowOutcome:
        options = sampling.options()
        if options.get("seed") is not None:
            options["seed"] += index  # vLLM seeds per request: n equal seeds would give n equal choices
        if row.stops:
            options["stop"] = list(row.stops)
        try:
            scored = await self.model.generate_from_ids(row.prompt_ids, max_new_tokens=row.max_tokens,
                                                        final_step=self.guard.final_step,
                                                        stats=self.guard.capture_stats, **options)
        except (InvalidParameterError, InvalidInputError) as exc:  # e.g. UnsupportedSamplingError
            raise OpenAIError(400, f"the vLLM backend cannot score this request: {exc}",
                              code="unsupported_parameter") from exc
        if row.on_token is not None:
            self._replay(row, scored)
        return RowOutcome(answer_ids=list(scored.answer_ids), text=scored.answer, stopped_on_eos=scored.stopped_on_eos,
                          stop_sequence=cut_at_stop(scored.answer, row.stops)[1], scored=scored)

    def _replay(self, row: Row, scored: Any) -> None:
        """The row's stream chunks, token by token with their energies, once the answer is complete."""
        from spill_guard.backends.vllm.model import replay_steps

        loaded = self.model.loaded
        listener = StreamListener([row], self.model.tokenizer, loaded.stop_token_ids, self.guard.rule.spec.beta,
                                   lambda: [None])
        replay_steps([scored], [listener], loaded.pad_token_id)


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
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=FINISH_THREADS,
                                                               thread_name_prefix="spill-guard-finish")
        engine.blocking_generate = self.generate_blocking  # a retry's regeneration, from a finish thread

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        return self._executor

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

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
        outcomes = await self._rows().generate(rows, key[1])
        return await asyncio.get_running_loop().run_in_executor(self._executor, context.run, finish, outcomes)

    def generate_blocking(self, rows: list[Row], sampling: Sampling) -> list[RowOutcome]:
        """Generate from a thread (not the event loop's): scheduled on the loop, waited for here."""
        assert self._loop is not None, "the runner has not started"
        return asyncio.run_coroutine_threadsafe(self._rows().generate(rows, sampling), self._loop).result()
