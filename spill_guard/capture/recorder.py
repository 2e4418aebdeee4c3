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
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import torch

from spill_guard.capture.final_step import check_final_step_mode, skip_ids_for
from spill_guard.capture.step_stats import validate_betas
from spill_guard.capture.streaming import CAPTURE_STATS, StreamingCapture, TokenStep, stop_lengths
from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import CaptureError

#: Most unclaimed pooled rows kept; older ones are dropped (their runs ended without claiming).
POOL_LIMIT = 256


@dataclass(frozen=True)
class RecordedAnswer:
    """One generated row: the exact prompt ids fed, the answer ids (through the first stop token)."""

    prompt_ids: list[int]
    answer_ids: list[int]
    stopped_on_eos: bool
    trace: TokenTrace | None  # None when the capture failed (see ``failure``)
    failure: str | None = None


@dataclass(frozen=True)
class Claim:
    """What :meth:`GenerationRecorder.claim` found: the answer, or why there is none."""

    answer: RecordedAnswer | None
    reason: str = ""


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

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, betas: Sequence[float] = (1.0,),
                 stats: str = "energy", listeners: Sequence[Callable[[TokenStep], None]] = (),
                 final_step: str = "always"):
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
        self._watchers: list[tuple[Callable[[], Hashable | None], Callable[[Hashable, list[RecordedAnswer]], None]]] = []
        self._watched = threading.local()  # (deliver, key) pairs of the generate call running in this thread
        self._original = model.generate
        model.generate = self._generate  # instance attribute: only this model object is wrapped

    @classmethod
    def for_model(cls, model: torch.nn.Module, tokenizer: Any, *, betas: Sequence[float] = (1.0,),
                  stats: str = "energy", final_step: str = "always") -> "GenerationRecorder":
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
                return Claim(None, "the generate call in this run's thread produced text that differs from the "
                                   "run's output; not attributed")
            candidates = [a for a in self._pool if self._same_prompt(a.prompt_ids, exp)]
            fitting = [a for a in candidates if self._fits(a, answer_text)]
            if not fitting:
                why = ("no generate call with this run's prompt was seen" if not candidates else
                       "the generate calls with this run's prompt produced other text")
                return Claim(None, why)
            first = fitting[0]
            if any(a.answer_ids != first.answer_ids for a in fitting[1:]):
                return Claim(None, f"{len(fitting)} concurrent generate calls with this run's prompt produced "
                                   "different answers that all fit its text; not attributed")
            self._pool.remove(first)  # identical candidates have identical scores: any one is this run's
            self._prune()
            return Claim(first)

    def forget(self, key: Hashable) -> None:
        """Drop the expectation for ``key`` (the run failed or was abandoned)."""
        with self._state:
            self._pop(key)
            self._prune()

    def watch(self, key: Callable[[], Hashable | None],
              deliver: Callable[[Hashable, list[RecordedAnswer]], None]) -> Callable[[], None]:
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
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or multiple > 1 or beams > 1:
            return self._original(*args, **kwargs)  # inputs_embeds, beams, n>1: not recordable, not touched
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(input_ids)
        wants_dict = bool(kwargs.get("return_dict_in_generate", getattr(config, "return_dict_in_generate", False)))
        capture = _GuardedCapture(self.model, self.betas, self.listeners, self.stats)
        try:
            capture.__enter__()
        except CaptureError:  # this thread already captures this model (e.g. the core's own generate)
            return self._original(*args, **kwargs)
        streamer = kwargs.get("streamer")
        ended: list[bool] = []
        if streamer is not None and callable(getattr(streamer, "end", None)):
            streamer.end = lambda: ended.append(True)  # held back until the rows are recorded
        try:
            stop_ids = self._stop_ids(kwargs, config)
            rows: tuple[list[int], list[bool]] | None = None  # answer lengths and stop flags, found once
            try:
                out = self._original(*args, **{**kwargs, "return_dict_in_generate": True})
                try:
                    rows = _row_lengths(out.sequences[:, int(input_ids.shape[1]):], stop_ids)
                    capture.finish(out.sequences, mask, _returned_cache(out), lengths=rows[0], stopped=rows[1],
                                   skip_after=skip_ids_for(self.final_step, self.tokenizer, stop_ids))
                except Exception as exc:  # noqa: BLE001 - the caller's generation already succeeded
                    capture.failure = capture.failure or exc
            finally:
                capture.__exit__(None, None, None)
            try:
                self._record(input_ids, mask, out.sequences, stop_ids, capture, rows)
            except Exception as exc:  # noqa: BLE001 - recording must never fail the caller
                self._record_failure(input_ids, mask, exc)
        finally:
            if streamer is not None and "end" in getattr(streamer, "__dict__", {}):
                del streamer.end
                if ended:
                    streamer.end()
        return out if wants_dict else out.sequences

    def _record(self, input_ids: torch.Tensor, mask: torch.Tensor, sequences: torch.Tensor,
                stop_ids: list[int], capture: _GuardedCapture,
                rows: tuple[list[int], list[bool]] | None = None) -> None:
        prompt_len = int(input_ids.shape[1])
        generated = sequences[:, prompt_len:]
        prompts = [row[m.bool()].tolist() for row, m in zip(input_ids.cpu(), mask.cpu())]
        if generated.shape[1] == 0:
            self._deliver([RecordedAnswer(p, [], False, None, "no tokens were generated") for p in prompts])
            return
        lengths, stopped = rows if rows is not None else _row_lengths(generated, stop_ids)
        ids = generated.cpu()
        if capture.failure is not None:
            why = f"capture failed: {type(capture.failure).__name__}: {capture.failure}"
            answers = [RecordedAnswer(p, ids[b, :n].tolist(), s, None, why)
                       for b, (p, n, s) in enumerate(zip(prompts, lengths, stopped))]
        else:
            traces = capture.traces(generated, lengths)
            answers = [RecordedAnswer(p, [int(i) for i in t.token_ids], s, t)
                       for p, t, s in zip(prompts, traces, stopped)]
        self._deliver(answers)

    def _record_failure(self, input_ids: torch.Tensor, mask: torch.Tensor, exc: Exception) -> None:
        prompts = [row[m.bool()].tolist() for row, m in zip(input_ids.cpu(), mask.cpu())]
        why = f"recording failed: {type(exc).__name__}: {exc}"
        self._deliver([RecordedAnswer(p, [], False, None, why) for p in prompts])

    def _deliver(self, answers: list[RecordedAnswer]) -> None:
        """Route 1 (this thread's expectations, in order), else the pool if any run may claim it."""
        thread = threading.get_ident()
        with self._state:
            queue = self._by_thread.get(thread, deque())
            for answer in answers:
                for exp in queue:
                    if exp.answer is None and self._same_prompt(answer.prompt_ids, exp):
                        exp.answer = answer
                        break
                else:
                    if any(e.answer is None and self._same_prompt(answer.prompt_ids, e) for e in self._pending.values()):
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
        keep = [a for a in self._pool
                if any(e.answer is None and self._same_prompt(a.prompt_ids, e) for e in self._pending.values())]
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


def _returned_cache(out: Any) -> Any:
    """The KV cache ``generate`` returned (``cache`` in newer transformers, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)
