"""One batched ``generate`` over the rows (sequences) of several requests.

Rows share sampling settings but each keeps its own ``max_tokens`` and stop sequences: a
per-row stopping criterion ends a row at its own limit (the batch runs to the longest), and
the capture's ``length_limits`` cuts its trace there. The token after the cut still gets its
``z_{T+1}`` from the next decode step, so a row's values equal those of the same prompt
generated alone (up to float rounding of the padded batch). Only the rows that run to the
batch's last column need the extra ``z_{T+1}`` step, and it runs on those rows alone
(:meth:`~spill_guard.capture.streaming.StreamingCapture.finish`).

Scored rows go through :meth:`SpillModel.generate_from_ids` (streaming capture of raw
logits); with scoring off (``scored=False``) the model's plain ``generate`` runs, with no hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from transformers import StoppingCriteria

from spill_guard.capture.padding import left_pad
from spill_guard.capture.streaming import TokenStep, stop_lengths
from spill_guard.guard.stream import TextIncrements
from spill_guard.serving.stops import cut_at_stop


@dataclass(frozen=True)
class Sampling:
    """Generation settings a batch shares. ``temperature == 0`` means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def options(self) -> dict[str, Any]:
        if self.greedy:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}


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
    """One sequence to generate. ``on_token`` (optional) receives its :class:`StreamToken` s in order."""

    prompt_ids: list[int]
    max_tokens: int
    stops: list[str] = field(default_factory=list)
    on_token: Callable[[StreamToken], None] | None = None


@dataclass
class RowOutcome:
    answer_ids: list[int]
    text: str  # the whole generated answer (special tokens dropped), before any stop-sequence cut
    stopped_on_eos: bool
    stop_sequence: str | None
    early_stopped: bool = False
    scored: Any = None  # ScoredAnswer when scored


class RowLimits(StoppingCriteria):
    """Ends each row at its own ``max_tokens``, or on the token that completes one of its stops.

    Called by ``generate`` after every chosen token; ``limits[row]`` is the row's answer length
    when this criterion ended it (``None``: it ran on to a stop token or the batch's end).
    """

    def __init__(self, rows: Sequence[Row], prompt_length: int, tokenizer: Any, stop_ids: Sequence[int],
                 on_new_tokens: Callable[[torch.Tensor, list[bool]], None] | None = None):
        self.rows = rows
        self.prompt_length = prompt_length
        self.tokenizer = tokenizer
        self.stop_ids = set(int(i) for i in stop_ids)
        self.limits: list[int | None] = [None] * len(rows)
        self.ended = [False] * len(rows)
        self.on_new_tokens = on_new_tokens

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        generated = input_ids[:, self.prompt_length :]
        n = int(generated.shape[1])
        live = [not e for e in self.ended]  # rows whose newest token is still part of their answer
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for i, row in enumerate(self.rows):
            if self.ended[i]:
                done[i] = True
                continue
            if int(generated[i, -1]) in self.stop_ids:
                self.ended[i] = True  # generate ends it itself; the stop token is the answer's last
            elif n >= row.max_tokens or (row.stops and cut_at_stop(
                    self.tokenizer.decode(generated[i].tolist(), skip_special_tokens=True), row.stops)[1] is not None):
                self.limits[i], self.ended[i] = n, True
                done[i] = True
        if self.on_new_tokens is not None:
            self.on_new_tokens(generated[:, -1], live)
        return done


def _combined_limits(*sources: Callable[[], Sequence[int | None]]) -> Callable[[], list[int | None]]:
    def limits() -> list[int | None]:
        out: list[int | None] = []
        for values in zip(*(s() for s in sources)):
            given = [v for v in values if v is not None]
            out.append(min(given) if given else None)
        return out
    return limits


def generate_scored(model: Any, rows: Sequence[Row], sampling: Sampling, *, stats: str, beta: float,
                    early_stop: Any = None, final_step: str = "auto") -> list[RowOutcome]:
    """Generate and score every row in one batched call (see the module docstring)."""
    loaded = model.loaded
    prompt_length = max(len(r.prompt_ids) for r in rows)
    limits = RowLimits(rows, prompt_length, model.tokenizer, loaded.stop_token_ids)
    criteria: list[Any] = [limits]
    sources: list[Callable[[], Sequence[int | None]]] = [lambda: limits.limits]
    listeners: list[Any] = []
    session = None
    if early_stop is not None:
        session = early_stop.session(len(rows), loaded.stop_token_ids)
        listeners.append(session.on_step)
        criteria.append(session)
        sources.append(session.limits)
    effective = _combined_limits(*sources)
    if any(r.on_token for r in rows):
        listeners.append(StreamListener(rows, model.tokenizer, loaded.stop_token_ids, beta, effective))
    answers = model.generate_from_ids([r.prompt_ids for r in rows], max_new_tokens=max(r.max_tokens for r in rows),
                                      listeners=listeners, stats=stats, stopping_criteria=criteria, final_step=final_step,
                                      length_limits=effective, **sampling.options())
    cut_early = session.limits() if session is not None else [None] * len(rows)
    outcomes = []
    for row, scored, early in zip(rows, answers, cut_early):
        text = scored.answer
        outcomes.append(RowOutcome(answer_ids=list(scored.answer_ids), text=text, stopped_on_eos=scored.stopped_on_eos,
                                   stop_sequence=cut_at_stop(text, row.stops)[1],
                                   early_stopped=early is not None and early <= len(scored.answer_ids),
                                   scored=scored))
    return outcomes


class StreamListener:
    """Capture listener: turns each :class:`TokenStep` into per-row :class:`StreamToken` s."""

    def __init__(self, rows: Sequence[Row], tokenizer: Any, stop_ids: Sequence[int], beta: float,
                 limits: Callable[[], list[int | None]]):
        self.rows = rows
        self.texts = [TextIncrements(tokenizer) for _ in rows]
        self.stop_ids = set(int(i) for i in stop_ids)
        self.beta = beta
        self.limits = limits
        self.ended = [False] * len(rows)

    def __call__(self, step: TokenStep) -> None:
        energy, marginal, delta = (v.tolist() for v in step.energies(self.beta))
        unit = step.betas.index(1.0)  # log-probabilities are defined at β = 1 (always captured)
        logprob = (step.chosen_logit - step.log_partition[unit]).tolist()
        tokens = step.token_ids.tolist()
        limits = self.limits()
        for i, row in enumerate(self.rows):
            if self.ended[i] or (limits[i] is not None and step.index >= limits[i]):
                continue
            token = int(tokens[i])
            if token in self.stop_ids or (limits[i] is not None and step.index + 1 >= limits[i]):
                self.ended[i] = True
            if row.on_token is not None:
                row.on_token(StreamToken(step.index, token, self.texts[i].push(token), energy[i], marginal[i],
                                         delta[i], logprob[i]))


def generate_plain(model: Any, rows: Sequence[Row], sampling: Sampling) -> list[RowOutcome]:
    """Scoring off: the model's own ``generate``, same batching and limits, no capture hook."""
    loaded = model.loaded
    prompts = [r.prompt_ids for r in rows]
    prompt_length = max(len(p) for p in prompts)
    texts = [TextIncrements(model.tokenizer) for _ in rows]
    counts = [0] * len(rows)

    def emit(tokens: torch.Tensor, live: list[bool]) -> None:
        for i, row in enumerate(rows):
            if live[i] and row.on_token is not None:
                token = int(tokens[i])
                row.on_token(StreamToken(counts[i], token, texts[i].push(token)))
            counts[i] += 1

    limits = RowLimits(rows, prompt_length, model.tokenizer, loaded.stop_token_ids,
                       on_new_tokens=emit if any(r.on_token for r in rows) else None)
    input_ids, mask, _ = left_pad(prompts, loaded.pad_token_id, loaded.device)
    options = sampling.options()
    seed = options.pop("seed", None)
    devices = [loaded.device.index or 0] if loaded.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        sequences = loaded.model.generate(input_ids=input_ids, attention_mask=mask, eos_token_id=loaded.stop_token_ids,
                                          pad_token_id=loaded.pad_token_id, max_new_tokens=max(r.max_tokens for r in rows),
                                          stopping_criteria=[limits], **options)
    generated = sequences[:, input_ids.shape[1]:]
    lengths, stopped = stop_lengths(generated, loaded.stop_token_ids)
    outcomes = []
    for i, row in enumerate(rows):
        length = min(lengths[i], limits.limits[i]) if limits.limits[i] is not None else lengths[i]
        ids = generated[i, :length].tolist()
        text = model.tokenizer.decode(ids, skip_special_tokens=True)
        outcomes.append(RowOutcome(answer_ids=ids, text=text, stopped_on_eos=stopped[i] and length == lengths[i],
                                   stop_sequence=cut_at_stop(text, row.stops)[1]))
    return outcomes
