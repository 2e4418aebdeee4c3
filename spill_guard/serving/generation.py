"""The server's one generation path: the rows (sequences) of one or more requests in one call of
the async facade (:meth:`~spill_guard.AsyncSpillModel.generate_params`), on any backend.

Rows share sampling settings but each keeps its own ``max_tokens`` and stop sequences: each row
is one :class:`~spill_guard.models.params.GenerationParams` of the same call, and the backend
ends it at its own limit or stop sequence and cuts its trace there. The token after the cut
still gets its ``z_{T+1}``, so a row's values equal those of the same prompt generated alone
(up to float rounding of a padded batch).

Streams: on a backend that streams steps (transformers), a scored row's tokens reach its
``on_token`` from a capture listener (:class:`StreamListener`) while it is generated, with
their energies; which rows are still running is read from a stop hook (:class:`RowsRunning`)
that never stops anything. With scoring off (``stats=None``) the tokens come from a stop hook
too (:class:`PlainStreamer`): no capture runs at all. On a backend that does not (vLLM), each
row's tokens are replayed, with the same values, once its call has returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from spill_guard.backends.replay import replay_steps
from spill_guard.capture.streaming import TokenStep
from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.guard.early_stop import EarlyStopWatch
from spill_guard.guard.stream import TextIncrements
from spill_guard.models.params import GenerationParams, offset_seed
from spill_guard.models.stops import cut_at_stop
from spill_guard.serving.errors import OpenAIError


@dataclass(frozen=True)
class Sampling:
    """Generation settings a batch shares. ``temperature == 0`` means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def params(self, row: Row, *, seed_offset: int = 0) -> GenerationParams:
        """``row``'s frozen params under this sampling (``seed_offset``: on a backend with per-row seeds,
        row ``i`` of a seeded call is seeded ``offset_seed(seed, i)``: ``seed + i`` in the seed range)."""
        if self.greedy:
            return GenerationParams(max_new_tokens=row.max_tokens, stop=tuple(row.stops))
        if row.seed is not None:
            seed: int | None = row.seed
        else:
            seed = None if self.seed is None else offset_seed(self.seed, seed_offset)
        return GenerationParams(
            max_new_tokens=row.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=seed,
            stop=tuple(row.stops),
        )


@dataclass(frozen=True)
class StreamToken:
    """A streamed token of one row: its text and, when scored, its energies and raw log-probability."""

    index: int
    token_id: int
    text: str
    token_energy: float | None = None
    marginal_energy: float | None = None
    spilled_energy: float | None = None
    logprob: float | None = None


@dataclass
class Row:
    """One sequence to generate. ``on_token`` (optional) receives its :class:`StreamToken` s in order.

    ``seed``: the row's own seed where it is sampled (a second opinion's sample, on a backend with
    per-row seeds), whatever the batch's sampling says; None: the batch's sampling seeds it.
    """

    prompt_ids: list[int]
    max_tokens: int
    stops: list[str] = field(default_factory=list)
    on_token: Callable[[StreamToken], None] | None = None
    seed: int | None = None


@dataclass
class RowOutcome:
    answer_ids: list[int]
    text: str  # the whole generated answer (special tokens dropped), before any stop-sequence cut
    stopped_on_eos: bool
    stop_sequence: str | None
    early_stopped: bool = False
    scored: Any = None  # ScoredAnswer when scored


class RowsRunning:
    """A stop hook that stops nothing: it records which rows are still generating.

    A row that ended at an earlier step is passed as ``None`` (the backend contract); a stream
    must not show what the batch pads it with afterwards.
    """

    def __init__(self, n: int):
        self.running = [True] * n

    def __call__(self, tokens: Sequence[int | None], length: int) -> None:
        for i, token in enumerate(tokens):
            if token is None:
                self.running[i] = False
        return None


async def generate_rows(
    model: Any,
    rows: Sequence[Row],
    sampling: Sampling,
    *,
    stats: str | None,
    beta: float,
    early_stop: Any = None,
    final_step: str = "auto",
) -> list[RowOutcome]:
    """Generate (and, unless ``stats`` is None, score) every row in one call of the async facade ``model``.

    The server's one generation path, on any backend (see the module docstring). On a backend
    that does not stream steps, a row's tokens reach its ``on_token`` once the answers are in,
    replayed with the same values; with :attr:`~spill_guard.backends.base.Capabilities.per_row_seeds`
    a seeded request's row ``i`` gets seed ``seed + i`` (wrapped into the seed range) and draws what that
    seed draws alone (one seed for all would give equal choices).
    """
    caps = model.capabilities
    loaded = model.loaded
    watch = EarlyStopWatch(early_stop, len(rows), loaded.stop_token_ids)
    listeners, hooks = watch.listeners, watch.hooks
    streaming = any(r.on_token for r in rows)
    if streaming and caps.streams_steps:
        if stats is None:
            hooks.append(PlainStreamer(rows, model.tokenizer))
        else:
            running = RowsRunning(len(rows))
            hooks.append(running)
            listeners.append(StreamListener(rows, model.tokenizer, beta, lambda: running.running))
    offsets = range(len(rows)) if caps.per_row_seeds else [0] * len(rows)
    try:
        answers = await model.generate_params(
            [r.prompt_ids for r in rows],
            [sampling.params(r, seed_offset=i) for r, i in zip(rows, offsets)],
            listeners=listeners,
            stop_hooks=hooks,
            stats=stats,
            final_step=final_step,
        )
    except (InvalidParameterError, InvalidInputError) as exc:  # e.g. vLLM's UnsupportedSamplingError
        raise OpenAIError(
            400, f"the {model.backend.name} backend cannot score this request: {exc}", code="unsupported_parameter"
        ) from exc
    if streaming and not caps.streams_steps:
        _replay(rows, answers, model, beta, stats)
    cut = watch.cut(answers)
    return [
        RowOutcome(
            answer_ids=list(answer.answer_ids),
            text=answer.answer,
            stopped_on_eos=answer.stopped_on_eos,
            stop_sequence=cut_at_stop(answer.answer, row.stops)[1],
            early_stopped=early,
            scored=None if stats is None else answer,
        )
        for row, answer, early in zip(rows, answers, cut)
    ]


def _replay(rows: Sequence[Row], answers: Sequence[Any], model: Any, beta: float, stats: str | None) -> None:
    """Each row's stream from its finished answer, token by token (a backend that does not stream steps)."""
    for row, answer in zip(rows, answers):
        if row.on_token is None:
            continue
        if stats is None:
            streamer = PlainStreamer([row], model.tokenizer)
            for length, token in enumerate(answer.answer_ids, start=1):
                streamer([int(token)], length)
        else:
            listener = StreamListener([row], model.tokenizer, beta, lambda: [True])
            replay_steps([answer], [listener], model.loaded.pad_token_id)


class StreamListener:
    """Capture listener: turns each :class:`TokenStep` into per-row :class:`StreamToken` s.

    ``running()`` says which rows were still generating when the step's token was chosen (a
    replayed answer: always all of them).
    """

    def __init__(self, rows: Sequence[Row], tokenizer: Any, beta: float, running: Callable[[], Sequence[bool]]):
        self.rows = rows
        self.texts = [TextIncrements(tokenizer) for _ in rows]
        self.beta = beta
        self.running = running

    def __call__(self, step: TokenStep) -> None:
        energy, marginal, delta = (v.tolist() for v in step.energies(self.beta))
        unit = step.betas.index(1.0)  # log-probabilities are defined at β = 1 (always captured)
        logprob = (step.chosen_logit - step.log_partition[unit]).tolist()
        tokens = step.token_ids.tolist()
        running = self.running()
        for i, row in enumerate(self.rows):
            if row.on_token is None or not running[i]:
                continue
            token = int(tokens[i])
            row.on_token(
                StreamToken(step.index, token, self.texts[i].push(token), energy[i], marginal[i], delta[i], logprob[i])
            )


class PlainStreamer:
    """Scoring off: a stop hook that hands each row's new token to its ``on_token`` (stops nothing)."""

    def __init__(self, rows: Sequence[Row], tokenizer: Any):
        self.rows = rows
        self.texts = [TextIncrements(tokenizer) for _ in rows]

    def __call__(self, tokens: Sequence[int | None], length: int) -> None:
        for i, (row, token) in enumerate(zip(self.rows, tokens)):
            if token is not None and row.on_token is not None:
                row.on_token(StreamToken(length - 1, token, self.texts[i].push(token)))
        return None
