"""From a validated request to guarded choices: prompts, rows, batching, policy, review log.

The engine owns the model (through a :class:`~spill_guard.SpillGuard`, or a bare
:class:`~spill_guard.SpillModel` with scoring off). Generation has one path on every backend:
the batcher awaits :meth:`Engine.generate`, which calls the model's async facade
(:meth:`~spill_guard.SpillModel.asynchronous`: in-process weights run in the model's one
worker thread, vLLM's async engine batches calls itself). Then, in a finish thread and the
request's context, the guard's decision per request (the core's one decision path,
:meth:`~spill_guard.guard.judge.Judge.decide`, via :meth:`Engine.decide`), where a retry's
extra generation goes through the same facade (:meth:`Engine.generate_blocking`); then one
review-log write for every request of the batch (:meth:`Engine.write_log`: one fsync or
transaction), then per request ``on_log_error`` and the choices (:meth:`Engine.complete`),
before any response is sent.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from spill_guard.backends.bridge import bind_loop
from spill_guard.guard.judge import Generated
from spill_guard.guard.recording import LogEntry
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import Prompt, check_text
from spill_guard.models.stops import cut_at_stop
from spill_guard.policy import Flag
from spill_guard.serving.batching import Batcher
from spill_guard.serving.config import ServerSettings
from spill_guard.serving.errors import OpenAIError
from spill_guard.serving.generation import Row, RowOutcome, Sampling, generate_rows
from spill_guard.serving.verdicts import HIDDEN


@dataclass
class Prepared:
    """A request turned into rows: ``n`` rows per prompt, all with the same settings."""

    route: str
    prompts: list[Prompt]
    n: int
    max_tokens: int
    stops: list[str]
    sampling: Sampling
    request_id: str
    params: GenerationParams
    rows: list[Row] = field(default_factory=list)

    @property
    def key(self) -> Hashable:
        """Batching key; its second item is the batch's :class:`Sampling` (see :meth:`Engine.run_batch`)."""
        if self.sampling.greedy:
            return ("greedy", Sampling())
        if self.sampling.seed is None:
            return ("sample", self.sampling)
        return ("seeded", self.sampling, self.request_id)  # alone in its batch: reproducible

    def prompt_of(self, choice: int) -> Prompt:
        return self.prompts[choice // self.n]


@dataclass
class Decided:
    """One request's choices, decided, waiting for the batch's review-log write."""

    prepared: Prepared
    outcomes: list[RowOutcome]
    verdicts: list[Any]  # a Verdict per choice; None per choice with scoring off
    entries: list[LogEntry]  # what to log: one per verdict (none with scoring off)


@dataclass
class ChoiceResult:
    """One choice, decided: the text to return and everything its JSON needs."""

    index: int
    text: str
    finish_reason: str
    verdict: Any  # Verdict, or None with scoring off
    stop_sequence: str | None
    scored: Any  # the chosen answer's ScoredAnswer (None with scoring off)
    completion_tokens: int

    @property
    def hidden(self) -> bool:
        return self.verdict is not None and self.verdict.action in HIDDEN


class Engine:
    """Model, guard and the request-to-choices logic of one server."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.guard: Any = None
        self.model: Any = None
        self.generator: Any = None  # the async facade every generation goes through
        self.loop: asyncio.AbstractEventLoop | None = None  # where generation runs (set by the first one)
        self._ids = itertools.count(1)
        # Second opinions' samples, drawn from the finish threads: a batcher of their own (the request batcher
        # waits for a batch's finishes), grouping the samples of the requests decided at the same time: up to
        # --max-batch requests' samples (K rows each, whatever K the guard's rule has now) in one call.
        self.samples = Batcher(
            self.run_batch,
            groups=lambda: not self.batches_itself,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            finish_threads=1,
            per="jobs",
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def attach(self, guard: Any, model: Any) -> None:
        """Serve ``model`` (a :class:`~spill_guard.SpillModel`, the guard's) under ``guard`` (None: scoring off)."""
        self.guard, self.model = guard, model
        self.generator = model.asynchronous()

    @property
    def batches_itself(self) -> bool:
        """The engine batches concurrent calls (vLLM): the batcher hands each request over at once."""
        return self.ready and bool(self.model.capabilities.continuous_batching)

    @property
    def ready(self) -> bool:
        return self.model is not None

    @property
    def scoring(self) -> bool:
        return self.guard is not None

    @property
    def model_name(self) -> str:
        return self.model.loaded.name

    def require_top_logprobs(self, param: str) -> None:
        """``top_logprobs`` come from a teacher-forced pass, which only a backend with in-process weights runs."""
        if not self.model.capabilities.top_alternatives:
            raise OpenAIError(
                400,
                f"{param} (top alternatives) are not available on the {self.model.backend.name} "
                "backend: they need a teacher-forced pass over the answer, which it does not run. "
                "Ask for the chosen tokens' logprobs only (chat: logprobs: true without "
                "top_logprobs; completions: logprobs: 0).",
                param=param,
                code="unsupported_parameter",
            )

    @property
    def streams_text(self) -> bool:
        """Under ``Flag`` (or scoring off) text streams token by token; other policies may replace it,
        so their streams carry energies first and the text with the verdict."""
        return self.guard is None or isinstance(self.guard.policy, Flag)

    def require_ready(self) -> None:
        if not self.ready:
            raise OpenAIError(
                503,
                "the model is still loading; retry shortly (GET /readyz says when it is ready).",
                code="model_loading",
            )

    # -- requests -> rows --------------------------------------------------------------------
    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise OpenAIError(
                404,
                f"model {name!r} is not served here; use {self.model_name!r} (GET /v1/models).",
                code="model_not_found",
                param="model",
            )

    def prepare(self, route: str, request: Any, prompts: list[Prompt], max_tokens: int | None) -> Prepared:
        """Check limits and sampling of ``request`` and build its rows (``n`` per prompt)."""
        refused = request.unsupported()
        if refused is not None:
            raise OpenAIError(400, refused[1], param=refused[0], code="unsupported_parameter")
        s = self.settings
        tokens = s.default_max_tokens if max_tokens is None else max_tokens
        if tokens > s.max_tokens_limit:
            raise OpenAIError(
                400,
                f"max_tokens={tokens} exceeds this server's limit of {s.max_tokens_limit}; ask for fewer tokens.",
                param="max_tokens",
                code="max_tokens_too_large",
            )
        if request.n > s.max_n or request.n * len(prompts) > s.max_n * 4:
            raise OpenAIError(
                400,
                f"n={request.n} for {len(prompts)} prompt(s) exceeds this server's limit of "
                f"{s.max_n} choices per prompt; ask for fewer.",
                param="n",
                code="n_too_large",
            )
        window = self.model.loaded.context_window
        for p in prompts:
            if len(p.ids) + tokens + 1 > window:
                raise OpenAIError(
                    400,
                    f"the prompt has {len(p.ids)} tokens; with max_tokens={tokens} it does not fit the "
                    f"model's context window of {window} (one position is kept to score the last "
                    "token). Shorten the prompt or lower max_tokens.",
                    param="messages",
                    code="context_length_exceeded",
                )
        temperature = 0.0 if request.temperature is None else float(request.temperature)
        top_p = 1.0 if request.top_p is None else float(request.top_p)
        stops = request.stops()
        if len(stops) > 4:
            raise OpenAIError(400, f"at most 4 stop sequences are allowed, got {len(stops)}.", param="stop")
        for stop in stops:
            check_text(stop, "stop sequence")
        params = GenerationParams(
            max_new_tokens=tokens, temperature=temperature, top_p=top_p, seed=request.seed, stop=tuple(stops)
        )
        prepared = Prepared(
            route,
            prompts,
            request.n,
            tokens,
            stops,
            _sampling(params),
            request_id=f"{next(self._ids)}-{uuid.uuid4().hex[:12]}",
            params=params,
        )
        prepared.rows = [Row(p.ids, tokens, stops) for p in prompts for _ in range(request.n)]
        return prepared

    def chat_prompt(self, messages: list[dict[str, str]]) -> Prompt:
        """The chat template over the messages as given (no instruction added)."""
        prompt = Prompt.for_chat(self.model.tokenizer, messages)
        prompt.ids  # noqa: B018 - a template that refuses the messages fails here, as a 400
        return prompt

    def text_prompt(self, text: str) -> Prompt:
        """A raw completion prompt: the text's tokens, no template."""
        if not text.strip():
            raise OpenAIError(400, "the prompt is empty; send the text to complete.", param="prompt")
        return Prompt.for_text(self.model.tokenizer, text)  # lone surrogates: InvalidInputError, a 400

    # -- generation (the event loop) ---------------------------------------------------------
    async def run_batch(self, key: Hashable, rows: list[Row]) -> list[RowOutcome]:
        """The batcher's callback: one generate for rows sharing ``key`` (whose second item is the sampling)."""
        assert isinstance(key, tuple)  # PreparedRequest.key: (kind, Sampling, ...)
        return await self.generate(rows, key[1])

    async def generate(self, rows: list[Row], sampling: Sampling) -> list[RowOutcome]:
        """The rows' outcomes through the async facade (the one generation path, any backend)."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
            bind_loop(self.model.backend, self.loop)  # the guard's model, where it is an async engine's view
        guard = self.guard
        if guard is None:
            return await generate_rows(self.generator, rows, sampling, stats=None, beta=1.0)
        return await generate_rows(
            self.generator,
            rows,
            sampling,
            stats=guard.capture_stats,
            beta=guard.rule.spec.beta,
            early_stop=guard.early_stop,
            final_step=guard.final_step,
        )

    def generate_samples_blocking(self, rows: list[Row], params: GenerationParams) -> list[RowOutcome]:
        """A second opinion's sample rows (each with its own seed) from a finish thread, through the sample
        batcher: the samples of concurrent requests' second opinions share one generate call."""
        assert self.loop is not None, "a second opinion samples only after a first generation"
        key = ("samples", Sampling(params.temperature, params.top_p))
        return asyncio.run_coroutine_threadsafe(self.samples.submit(key, rows, list), self.loop).result()

    def generate_blocking(self, rows: list[Row], sampling: Sampling) -> list[RowOutcome]:
        """:meth:`generate` from a finish thread (a retry): run on the event loop, waited for here."""
        assert self.loop is not None, "a retry regenerates only after a first generation"
        return asyncio.run_coroutine_threadsafe(self.generate(rows, sampling), self.loop).result()

    # -- the finish threads ------------------------------------------------------------------
    def decide(self, prepared: Prepared, outcomes: list[RowOutcome], *, tags: tuple[str, ...] = ("serve",)) -> Decided:
        """Every choice's verdict (worker thread, the request's context), with its OpenTelemetry
        event and metrics; its review-log entry is written later, with the batch's."""
        if self.guard is None:
            return Decided(prepared, outcomes, [None] * len(outcomes), [])
        verdicts = [self._verdict(prepared, i, out) for i, out in enumerate(outcomes)]
        for verdict in verdicts:
            self.guard.observe(verdict)
        entries = [
            LogEntry(v, tags, {"request_id": prepared.request_id, "route": prepared.route, "choice": i})
            for i, v in enumerate(verdicts)
        ]
        return Decided(prepared, outcomes, verdicts, entries)

    def write_log(self, entries: list[LogEntry]) -> list[Exception | None]:
        """Write the entries of one request, or of every request of a batch, with one sink call."""
        if self.guard is None or not entries:
            return [None] * len(entries)
        return self.guard.write_log(entries)

    def complete(self, decided: Decided, failures: list[Exception | None]) -> list[ChoiceResult]:
        """After the write (worker thread, the request's context): ``on_log_error`` per verdict, then the choices."""
        if self.guard is not None:
            for verdict, failure in zip(decided.verdicts, failures):
                self.guard.settle_log(verdict, failure)  # "raise": this request fails; "warn": it goes on
        return [
            self._choice(decided.prepared, i, out, verdict)
            for i, (out, verdict) in enumerate(zip(decided.outcomes, decided.verdicts))
        ]

    def _verdict(self, prepared: Prepared, index: int, outcome: RowOutcome) -> Any:
        guard, prompt = self.guard, prepared.prompt_of(index)

        def generate(next_prompt: Prompt, params: GenerationParams) -> Generated:  # a retry's answer
            row = Row(next_prompt.ids, params.max_new_tokens, list(params.stop))
            [out] = self.generate_blocking([row], _sampling(params))
            return Generated(out.scored, out.early_stopped)

        def generate_samples(next_prompt: Prompt, params: Sequence[GenerationParams]) -> list[Generated]:
            # A second opinion's samples: rows with their own seeds, batched with other requests' samples.
            first = params[0]
            if any((p.temperature, p.top_p) != (first.temperature, first.top_p) or p.greedy for p in params):
                return [generate(next_prompt, p) for p in params]
            rows = [Row(next_prompt.ids, p.max_new_tokens, list(p.stop), seed=p.seed) for p in params]
            return [Generated(o.scored, o.early_stopped) for o in self.generate_samples_blocking(rows, first)]

        return guard.judge.decide(
            Generated(outcome.scored, outcome.early_stopped),
            prompt=prompt,
            params=prepared.params,
            policy=guard.policy,
            generate=generate,
            generate_rows=generate_samples if self.generator.capabilities.per_row_seeds else None,
        )

    def _choice(self, prepared: Prepared, index: int, outcome: RowOutcome, verdict: Any) -> ChoiceResult:
        if verdict is None:
            text, matched = cut_at_stop(outcome.text, prepared.stops)
            return ChoiceResult(
                index,
                text,
                _finish_reason(outcome.stopped_on_eos, matched),
                None,
                matched,
                None,
                len(outcome.answer_ids),
            )
        scored = verdict.scored
        text, matched = verdict.answer, None
        if verdict.action not in HIDDEN:
            text, matched = cut_at_stop(verdict.answer, prepared.stops)
        stopped = bool(scored is not None and scored.stopped_on_eos)
        finish = "length" if verdict.early_stopped else _finish_reason(stopped, matched)
        n_tokens = len(scored.answer_ids) if scored is not None else len(outcome.answer_ids)
        return ChoiceResult(index, text, finish, verdict, matched, scored, n_tokens)


def _sampling(params: GenerationParams) -> Sampling:
    """The batch-sharing part of ``params`` (the batching key's sampling)."""
    return Sampling() if params.greedy else Sampling(params.temperature, params.top_p, params.seed)


def _finish_reason(stopped_on_eos: bool, matched: str | None) -> str:
    return "stop" if stopped_on_eos or matched is not None else "length"
