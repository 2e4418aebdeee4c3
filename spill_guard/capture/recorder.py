"""Record the raw-logit statistics of ``generate`` calls made by code you do not control.

Frameworks (LangChain's ``HuggingFacePipeline``, a transformers ``pipeline``...) call a
model's ``generate`` from their own code, threads and batches. :class:`GenerationRecorder`
wraps that one model's ``generate`` once (an instance attribute; the class is untouched) and,
while someone *expects* an answer, runs it under the core's :class:`StreamingCapture` (a
forward hook on the raw logits) plus, when needed, the one extra step for ``z_{T+1}``, so each
generated row gets the same :class:`TokenTrace` as :func:`generate_with_capture` would give. With nothing
expected, ``generate`` runs untouched.

Routing rows to the answers they belong to, without guessing:

1. :meth:`expect` is called with the exact prompt ids, in the thread that will generate
   (LangChain runs sync callbacks inline): rows of a ``generate`` in that thread are matched
   to that thread's expectations in order, each row to the first expectation with its prompt.
   A multi-prompt batch (several expectations, padded ``generate`` calls) maps back by order.
2. A ``generate`` in another thread (a streamer's plain ``threading.Thread``, an executor)
   leaves its rows in a pool; :meth:`claim` takes the one with the run's prompt whose decoded
   text is consistent with the text the run returned. Several different candidates: the run
   gets no answer and the reason says so (never a guess).

Capture failures never reach the caller's ``generate``: the hook catches and stores them, the
row is reported as failed, generation goes on. With a ``streamer``, its ``end()`` is held back
until the rows are recorded, so a consumer that sees the end of the stream can claim them.

Retries (:meth:`GenerationRecorder.plan`): a *planner*, called in the generating thread with a
row's prompt ids and the call's token budget, may return a :class:`Substitution` for that row:
the retry attempt's prompt ids and/or sampling (greedy, or temperature / top_p with the core's
per-call seeded generator). The wrapped ``generate`` then feeds the substituted ids with that
sampling, records the trace against the ids actually fed (``RecordedAnswer.prompt_ids``; the
framework's own ids are kept in ``asked_ids`` and route the row to its run), and returns to the
framework sequences made of its *original* prompt ids followed by the new tokens, so the
framework's own decoding and prompt stripping work unchanged. A substitution applies to a
one-row call only (a padded batch, several return sequences or beams would not reproduce the
attempt exactly): such a call is refused with a :class:`CaptureError`.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from spill_guard.capture.final_step import check_final_step_mode, skip_ids_for
from spill_guard.capture.step_stats import validate_betas
from spill_guard.capture.streaming import CAPTURE_STATS, StreamingCapture, TokenStep, stop_lengths
from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import CaptureError

#: Most unclaimed pooled rows kept; older ones are dropped (their runs ended without claiming).
POOL_LIMIT = 256


class SeedingWindow(Protocol):
    """A per-call random generator for seeded sampling (the core's
    :class:`spill_guard.models.seeding.SeededSampling`): the logits processor and stopping
    criterion of its window, and a context manager around the ``generate`` call."""

    def generate_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...


@dataclass(frozen=True)
class Substitution:
    """What a retry attempt changes in one row's ``generate`` call.

    Args:
        prompt_ids: the ids to feed instead of the framework's (``None``: the framework's).
        max_new_tokens: the attempt's budget (``None``: the framework's).
        do_sample: ``False`` decodes greedily; ``True`` samples at ``temperature`` / ``top_p``.
        temperature, top_p: the sampling settings (``do_sample=True`` only).
        seeding: the per-call seeded generator of a seeded sample (``SeededSampling(seed)``, fresh
            for this call), placed as the core's transformers backend places it; ``None``: unseeded.
    """

    prompt_ids: tuple[int, ...] | None = None
    max_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seeding: SeedingWindow | None = None

    def __post_init__(self) -> None:
        if self.prompt_ids is not None and not self.prompt_ids:
            raise CaptureError("a substitution's prompt_ids must not be empty; pass None to keep the framework's.")
        if self.seeding is not None and not self.do_sample:
            raise CaptureError("a seeded substitution must sample (do_sample=True); greedy decoding draws nothing.")


#: ``planner(prompt_ids, max_new_tokens)``: the substitution of one row of a ``generate`` call (called in
#: the generating thread, with the row's prompt ids and the call's budget, ``None`` when unknown), or None.
Planner = Callable[[list[int], int | None], Substitution | None]


@dataclass(frozen=True)
class RecordedAnswer:
    """One generated row: the exact prompt ids fed, the answer ids (through the first stop token).

    ``asked_ids``: for a substituted row (a retry attempt), the prompt ids the framework asked for
    (``prompt_ids`` are those fed); ``None`` otherwise.
    """

    prompt_ids: list[int]
    answer_ids: list[int]
    stopped_on_eos: bool
    trace: TokenTrace | None  # None when the capture failed (see ``failure``)
    failure: str | None = None
    asked_ids: list[int] | None = None

    @property
    def substituted(self) -> bool:
        """Whether a retry attempt's substitution made this row."""
        return self.asked_ids is not None

    @property
    def routing_ids(self) -> list[int]:
        """The prompt ids the framework's call asked for: what routes the row to its run."""
        return self.asked_ids if self.asked_ids is not None else self.prompt_ids


@dataclass(frozen=True)
class Claim:
    """What :meth:`GenerationRecorder.claim` found: the answer, or why there is none."""

    answer: RecordedAnswer | None
    reason: str = ""


#: A :meth:`GenerationRecorder.watch` entry: the key function and the delivery callback.
_Watcher = tuple[Callable[[], Hashable | None], Callable[[Hashable, list[RecordedAnswer]], None]]


@dataclass
class _Expectation:
    key: Hashable
    prompt_ids: list[int]
    prompt_text: str
    thread: int
    answer: RecordedAnswer | None = None


class _GuardedCapture(StreamingCapture):
    """A capture whose hook never raises into the model's forward: the first error is kept."""

    failure: BaseException | None = None

    @torch.no_grad()
    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self.failure is not None:
            return
        try:
            super()._hook(module, args, kwargs, output)
        except Exception as exc:  # noqa: BLE001 - any capture error must leave generate running
            self.failure = exc


class GenerationRecorder:
    """Capture every expected answer a wrapped model generates; one recorder per model.

    Get it with :meth:`for_model` (it wraps ``model.generate`` the first time). Shapes and
    statistics are the core's: ``betas`` captured, ``stats`` ``"energy"`` or ``"full"``.
    ``listeners`` receive each token's :class:`TokenStep` (a raising listener only fails that
    capture, never the generation).
    """

    _lock = threading.Lock()  # creating / finding a model's recorder

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        betas: Sequence[float] = (1.0,),
        stats: str = "energy",
        listeners: Sequence[Callable[[TokenStep], None]] = (),
        final_step: str = "always",
    ):
        self.final_step = check_final_step_mode(final_step)
        if stats not in CAPTURE_STATS:
            raise CaptureError(f"stats must be one of {list(CAPTURE_STATS)}, got {stats!r}.")
        if not callable(getattr(model, "generate", None)):
            raise CaptureError(f"{type(model).__name__} has no generate(); pass a transformers causal LM.")
        self.model = model
        self.tokenizer = tokenizer
        self.betas = validate_betas(tuple(betas))
        self.stats = stats
        self.listeners = tuple(listeners)
        self._state = threading.Lock()
        self._pending: dict[Hashable, _Expectation] = {}
        self._by_thread: dict[int, deque[_Expectation]] = {}
        self._pool: deque[RecordedAnswer] = deque(maxlen=POOL_LIMIT)
        self._watchers: list[_Watcher] = []
        self._planners: list[Planner] = []
        self._watched = threading.local()  # (deliver, key) pairs of the generate call running in this thread
        lm: Any = model  # a transformers causal LM: generate() is not a torch.nn.Module attribute
        self._original: Callable[..., Any] = lm.generate
        lm.generate = self._generate  # instance attribute: only this model object is wrapped

    @classmethod
    def for_model(
        cls,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        betas: Sequence[float] = (1.0,),
        stats: str = "energy",
        final_step: str = "always",
    ) -> GenerationRecorder:
        """The model's recorder, created (and ``generate`` wrapped) on first use.

        A later caller needing more betas, ``stats="full"`` or ``final_step="always"`` widens
        the existing recorder. ``final_step="auto"`` skips the ``z_{T+1}`` step after a stop
        token without text (:mod:`spill_guard.capture.final_step`).
        """
        check_final_step_mode(final_step)
        with cls._lock:
            # The recorder lives on the model (its wrapped generate): no global registry keeps models alive.
            recorder = getattr(model.__dict__.get("generate"), "__self__", None)
            if not isinstance(recorder, GenerationRecorder):
                recorder = cls(model, tokenizer, betas=betas, stats=stats, final_step=final_step)
            else:
                recorder.betas = validate_betas(tuple(dict.fromkeys((*recorder.betas, *betas))))
                if stats == "full":
                    recorder.stats = "full"
                if final_step == "always":
                    recorder.final_step = "always"
            return recorder

    def uninstall(self) -> None:
        """Restore the model's own ``generate`` (pending expectations get no answer)."""
        with type(self)._lock:
            if self.model.__dict__.get("generate") == self._generate:
                del self.model.generate

    # -- expectations ------------------------------------------------------------------------
    def expect(self, key: Hashable, prompt_ids: Sequence[int]) -> None:
        """Announce that ``generate`` will produce an answer to ``prompt_ids`` for ``key``.

        Call it in the thread that will call ``generate`` when you can (route 1 above); from
        elsewhere it still works through the pool (route 2).
        """
        ids = [int(i) for i in prompt_ids]
        exp = _Expectation(key, ids, self._normal_prompt(ids), threading.get_ident())
        with self._state:
            if key in self._pending:
                raise CaptureError(f"an answer is already expected for key {key!r}; claim or forget it first.")
            self._pending[key] = exp
            self._by_thread.setdefault(exp.thread, deque()).append(exp)

    def claim(self, key: Hashable, answer_text: str | None = None) -> Claim:
        """The recorded answer for ``key`` (and forget the expectation).

        ``answer_text``, the text the framework returned (with or without the prompt in front),
        is checked against the recorded ids, so a pooled row is only taken when it fits.
        """
        with self._state:
            exp = self._pop(key)
            if exp is None:
                return Claim(None, f"no answer was expected for key {key!r}")
            if exp.answer is not None:
                if self._fits(exp.answer, answer_text):
                    return Claim(exp.answer)
                return Claim(
                    None,
                    "the generate call in this run's thread produced text that differs from the "
                    "run's output; not attributed",
                )
            candidates = [a for a in self._pool if self._same_prompt(a.routing_ids, exp)]
            fitting = [a for a in candidates if self._fits(a, answer_text)]
            if not fitting:
                why = (
                    "no generate call with this run's prompt was seen"
                    if not candidates
                    else "the generate calls with this run's prompt produced other text"
                )
                return Claim(None, why)
            first = fitting[0]
            if any(a.answer_ids != first.answer_ids for a in fitting[1:]):
                return Claim(
                    None,
                    f"{len(fitting)} concurrent generate calls with this run's prompt produced "
                    "different answers that all fit its text; not attributed",
                )
            self._pool.remove(first)  # identical candidates have identical scores: any one is this run's
            self._prune()
            return Claim(first)

    def forget(self, key: Hashable) -> None:
        """Drop the expectation for ``key`` (the run failed or was abandoned)."""
        with self._state:
            self._pop(key)
            self._prune()

    def watch(
        self, key: Callable[[], Hashable | None], deliver: Callable[[Hashable, list[RecordedAnswer]], None]
    ) -> Callable[[], None]:
        """Route 3, for frameworks whose run id is a context variable copied into their threads.

        Every ``generate`` for which ``key()``, called in the generating thread, is not None
        (e.g. LlamaIndex's active span id) is recorded; its rows go to ``deliver(key, rows)`` in
        that thread before ``generate`` returns (a stream's ``end()`` is held until then).
        No prompt needs announcing. Returns the function that stops watching.
        """
        entry = (key, deliver)
        with self._state:
            self._watchers.append(entry)

        def stop() -> None:
            with self._state:
                if entry in self._watchers:
                    self._watchers.remove(entry)

        return stop

    def plan(self, planner: Planner) -> Callable[[], None]:
        """Let ``planner`` substitute rows of this model's recorded ``generate`` calls (retries).

        ``planner(prompt_ids, max_new_tokens)`` is called in the generating thread for each row of
        a recorded call (one someone expects or watches), before it runs; the first planner
        returning a :class:`Substitution` decides the row. Returns the function that stops planning.
        """
        with self._state:
            self._planners.append(planner)

        def stop() -> None:
            with self._state:
                if planner in self._planners:
                    self._planners.remove(planner)

        return stop

    def _watch_keys(self) -> tuple[tuple[Callable[..., None], Hashable], ...]:
        calls = []
        for key, deliver in list(self._watchers):
            try:
                run = key()
            except Exception:  # noqa: BLE001 - a broken key function only loses its own recording
                run = None
            if run is not None:
                calls.append((deliver, run))
        self._watched.calls = tuple(calls)
        return self._watched.calls

    @property
    def pending(self) -> int:
        with self._state:
            return len(self._pending)

    # -- the wrapped generate ---------------------------------------------------------------
    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        if not self._watch_keys() and not self._pending:  # nothing expected: the model's own generate, untouched
            return self._original(*args, **kwargs)
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        config = kwargs.get("generation_config") or getattr(self.model, "generation_config", None)
        multiple = int(kwargs.get("num_return_sequences") or getattr(config, "num_return_sequences", 1) or 1)
        beams = int(kwargs.get("num_beams") or getattr(config, "num_beams", 1) or 1)
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
            return self._original(*args, **kwargs)  # inputs_embeds: not recordable, not touched
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(input_ids)
        substitution = self._planned(input_ids, mask, kwargs, config, multiple=multiple, beams=beams)
        if multiple > 1 or beams > 1:
            return self._original(*args, **kwargs)  # beams, n>1: not recordable, not touched
        wants_dict = bool(kwargs.get("return_dict_in_generate", getattr(config, "return_dict_in_generate", False)))
        call_args, call_kwargs, fed, fed_mask = args, dict(kwargs), input_ids, mask
        seeding: Any = None
        if substitution is not None:
            call_args, call_kwargs, fed, fed_mask = _substituted_call(args, kwargs, input_ids, substitution)
            seeding = substitution.seeding
        capture = _GuardedCapture(self.model, self.betas, self.listeners, self.stats)
        try:
            capture.__enter__()
        except CaptureError:  # this thread already captures this model (e.g. the core's own generate)
            if substitution is not None:
                raise CaptureError(
                    "a retry attempt's generate call runs inside another capture of this model in the same thread, "
                    "so it cannot be regenerated and recorded; run the retry outside the core's own generation."
                ) from None
            return self._original(*args, **kwargs)
        streamer = kwargs.get("streamer")
        ended: list[bool] = []
        if streamer is not None and callable(getattr(streamer, "end", None)):
            streamer.end = lambda: ended.append(True)  # held back until the rows are recorded
        try:
            stop_ids = self._stop_ids(kwargs, config)
            rows: tuple[list[int], list[bool]] | None = None  # answer lengths and stop flags, found once
            try:
                with seeding or contextlib.nullcontext():  # pops a seeded window left open by an error
                    out = self._original(*call_args, **{**call_kwargs, "return_dict_in_generate": True})
                try:
                    rows = _row_lengths(out.sequences[:, int(fed.shape[1]) :], stop_ids)
                    capture.finish(
                        out.sequences,
                        fed_mask,
                        _returned_cache(out),
                        lengths=rows[0],
                        stopped=rows[1],
                        skip_after=skip_ids_for(self.final_step, self.tokenizer, stop_ids),
                    )
                except Exception as exc:  # noqa: BLE001 - the caller's generation already succeeded
                    capture.failure = capture.failure or exc
            finally:
                capture.__exit__(None, None, None)
            asked = _prompts(input_ids, mask) if substitution is not None else None
            try:
                self._record(fed, fed_mask, out.sequences, stop_ids, capture, rows, asked=asked)
            except Exception as exc:  # noqa: BLE001 - recording must never fail the caller
                self._record_failure(fed, fed_mask, exc, asked=asked)
            if substitution is not None:  # the framework's prompt, then the attempt's new tokens
                out.sequences = torch.cat(
                    [input_ids, out.sequences[:, int(fed.shape[1]) :].to(input_ids.device)], dim=1
                )
        finally:
            if streamer is not None and "end" in getattr(streamer, "__dict__", {}):
                del streamer.end
                if ended:
                    streamer.end()
        return out if wants_dict else out.sequences

    def _planned(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        kwargs: dict[str, Any],
        config: Any,
        *,
        multiple: int,
        beams: int,
    ) -> Substitution | None:
        """The substitution the planners give this call (one row only), or None."""
        with self._state:
            planners = list(self._planners)
        if not planners:
            return None
        prompts = _prompts(input_ids, mask)
        budget = _budget(kwargs, config, int(input_ids.shape[1]))
        plans: list[Substitution | None] = []
        for prompt in prompts:
            plan = None
            for planner in planners:
                plan = planner(list(prompt), budget)  # a failing planner fails the attempt's call, loudly
                if plan is not None:
                    break
            plans.append(plan)
        planned = [i for i, plan in enumerate(plans) if plan is not None]
        if not planned:
            return None
        if len(prompts) > 1:
            raise CaptureError(
                f"a retry attempt regenerates one row per generate call, but this call batches {len(prompts)} rows "
                f"(row(s) {planned} belong to the attempt); a padded batch would not reproduce the attempt exactly. "
                "Run retries one question at a time (one prompt per call, e.g. a pipeline with batch_size=1)."
            )
        if multiple > 1 or beams > 1:
            raise CaptureError(
                f"a retry attempt regenerates one answer, but this generate call asks for num_return_sequences="
                f"{multiple}, num_beams={beams}; call the model with one greedy or sampled sequence."
            )
        return plans[0]

    def _record(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        sequences: torch.Tensor,
        stop_ids: list[int],
        capture: _GuardedCapture,
        rows: tuple[list[int], list[bool]] | None = None,
        *,
        asked: list[list[int]] | None = None,
    ) -> None:
        """Deliver the rows of a call that fed ``input_ids`` (``asked``: the framework's prompts, when substituted)."""
        prompt_len = int(input_ids.shape[1])
        generated = sequences[:, prompt_len:]
        prompts = _prompts(input_ids, mask)
        routes = asked if asked is not None else [None] * len(prompts)
        if generated.shape[1] == 0:
            self._deliver(
                [RecordedAnswer(p, [], False, None, "no tokens were generated", a) for p, a in zip(prompts, routes)]
            )
            return
        lengths, stopped = rows if rows is not None else _row_lengths(generated, stop_ids)
        ids = generated.cpu()
        if capture.failure is not None:
            why = f"capture failed: {type(capture.failure).__name__}: {capture.failure}"
            answers = [
                RecordedAnswer(p, ids[b, :n].tolist(), s, None, why, a)
                for b, (p, n, s, a) in enumerate(zip(prompts, lengths, stopped, routes))
            ]
        else:
            traces = capture.traces(generated, lengths)
            answers = [
                RecordedAnswer(p, [int(i) for i in t.token_ids], s, t, None, a)
                for p, t, s, a in zip(prompts, traces, stopped, routes)
            ]
        self._deliver(answers)

    def _record_failure(
        self, input_ids: torch.Tensor, mask: torch.Tensor, exc: Exception, *, asked: list[list[int]] | None = None
    ) -> None:
        prompts = _prompts(input_ids, mask)
        routes = asked if asked is not None else [None] * len(prompts)
        why = f"recording failed: {type(exc).__name__}: {exc}"
        self._deliver([RecordedAnswer(p, [], False, None, why, a) for p, a in zip(prompts, routes)])

    def _deliver(self, answers: list[RecordedAnswer]) -> None:
        """Route 1 (this thread's expectations, in order), else the pool if any run may claim it."""
        thread = threading.get_ident()
        with self._state:
            queue = self._by_thread.get(thread, deque())
            for answer in answers:
                for exp in queue:
                    if exp.answer is None and self._same_prompt(answer.routing_ids, exp):
                        exp.answer = answer
                        break
                else:
                    if any(
                        e.answer is None and self._same_prompt(answer.routing_ids, e) for e in self._pending.values()
                    ):
                        self._pool.append(answer)
        calls, self._watched.calls = getattr(self._watched, "calls", ()), ()
        for deliver, run in calls:  # route 3, outside the lock: delivering may score and dispatch events
            try:
                deliver(run, answers)
            except Exception:  # noqa: BLE001 - a watcher's failure must not reach the caller's generate
                pass

    # -- helpers -----------------------------------------------------------------------------
    def _pop(self, key: Hashable) -> _Expectation | None:
        exp = self._pending.pop(key, None)
        if exp is not None:
            queue = self._by_thread.get(exp.thread)
            if queue is not None:
                queue.remove(exp)
                if not queue:
                    del self._by_thread[exp.thread]
        return exp

    def _prune(self) -> None:
        """Drop pooled rows no pending expectation could claim (their runs ended)."""
        keep = [
            a
            for a in self._pool
            if any(e.answer is None and self._same_prompt(a.routing_ids, e) for e in self._pending.values())
        ]
        self._pool.clear()
        self._pool.extend(keep)

    def _normal_prompt(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def _same_prompt(self, ids: list[int], exp: _Expectation) -> bool:
        # Exact ids first; the decoded text covers a framework that adds e.g. a BOS token.
        return ids == exp.prompt_ids or self._normal_prompt(ids) == exp.prompt_text

    def _fits(self, answer: RecordedAnswer, text: str | None) -> bool:
        if text is None or not answer.answer_ids:
            return True
        decoded = self.tokenizer.decode(answer.answer_ids, skip_special_tokens=True).strip()
        return text.strip().endswith(decoded)

    def _stop_ids(self, kwargs: dict[str, Any], config: Any) -> list[int]:
        eos = kwargs.get("eos_token_id", getattr(config, "eos_token_id", None))
        ids = eos if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
        if not ids and getattr(self.tokenizer, "eos_token_id", None) is not None:
            ids = [self.tokenizer.eos_token_id]
        return [int(i) for i in ids]


def _row_lengths(generated: torch.Tensor, stop_ids: list[int]) -> tuple[list[int], list[bool]]:
    """Each row's answer length through its first stop token (the whole row without stop ids)."""
    if stop_ids:
        return stop_lengths(generated, stop_ids)
    rows = int(generated.shape[0])
    return [int(generated.shape[1])] * rows, [False] * rows


def _prompts(input_ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """Each row's prompt ids (padding removed)."""
    return [row[m.bool()].tolist() for row, m in zip(input_ids.cpu(), mask.cpu())]


def _budget(kwargs: dict[str, Any], config: Any, prompt_length: int) -> int | None:
    """The call's ``max_new_tokens`` (from its kwargs, else its generation config, else ``max_length``)."""
    budget = kwargs.get("max_new_tokens", getattr(config, "max_new_tokens", None))
    if budget is None:
        longest = kwargs.get("max_length", getattr(config, "max_length", None))
        budget = longest - prompt_length if isinstance(longest, int) else None
    return int(budget) if isinstance(budget, int) and budget > 0 else None


#: Inputs shaped like the framework's prompt: they cannot follow a substituted prompt of another length.
_PROMPT_SHAPED = ("token_type_ids", "position_ids", "cache_position", "inputs_embeds", "past_key_values")


def _substituted_call(
    args: tuple, kwargs: dict[str, Any], input_ids: torch.Tensor, sub: Substitution
) -> tuple[tuple, dict[str, Any], torch.Tensor, torch.Tensor]:
    """The arguments of the attempt's ``generate`` call: its prompt, its sampling, the seeded window placed as the
    core's transformers backend places it (its processor after every other, its criterion before the framework's)."""
    if len(args) > 1:
        raise CaptureError(
            f"a retry attempt cannot regenerate a generate call with {len(args)} positional "
            "arguments; the framework must pass generate's options by name."
        )
    call = {k: v for k, v in kwargs.items() if k != "input_ids"}
    fed = input_ids
    if sub.prompt_ids is not None:
        fed = torch.tensor([list(sub.prompt_ids)], dtype=input_ids.dtype, device=input_ids.device)
        shaped = [name for name in _PROMPT_SHAPED if kwargs.get(name) is not None]
        if shaped and list(sub.prompt_ids) != input_ids[0].tolist():
            raise CaptureError(
                f"a retry attempt feeds other prompt ids, but this generate call also passes "
                f"{shaped}, shaped like its own prompt; call the model with input_ids and "
                "attention_mask only."
            )
    fed_mask = torch.ones_like(fed)
    call.update(input_ids=fed, attention_mask=fed_mask, do_sample=sub.do_sample)
    if sub.max_new_tokens is not None:
        call["max_new_tokens"] = sub.max_new_tokens
        call.pop("max_length", None)
    if sub.do_sample:
        call.update(temperature=sub.temperature, top_p=sub.top_p)
    if sub.seeding is not None:
        window = sub.seeding.generate_kwargs({})
        call["logits_processor"] = [*(kwargs.get("logits_processor") or ()), *window["logits_processor"]]
        call["stopping_criteria"] = [*window["stopping_criteria"], *(kwargs.get("stopping_criteria") or ())]
    return (), call, fed, fed_mask


def _returned_cache(out: Any) -> Any:
    """The KV cache ``generate`` returned (``cache`` in newer transformers, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)
