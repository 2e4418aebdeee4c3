"""Score the answers of a user's unmodified ``HuggingFaceLLM`` (llama-index-llms-huggingface).

``instrument(llm, guard=...)`` leaves the LLM object as it is and wraps its torch model's
``generate`` once, through the core's :class:`~spill_guard.capture.recorder.GenerationRecorder`
(route 3: keyed by a context variable). The key is LlamaIndex's active span id:
``HuggingFaceLLM.complete`` calls ``generate`` in the caller's thread inside its span, and
``stream_complete`` in a LlamaIndex ``Thread``, which copies the caller's context, so the
span id reaches the generating thread in every call style (chat and the async methods go
through these two). Only spans opened on *this* LLM object are recorded.

Each answer is scored from the raw logits of the pass that generated it, judged with the
guard's rule (never its policy: an LLM returns what the model said), and delivered:

- as a :class:`~spill_guard_llama_index.SpillScoredEvent` on the instrumentation dispatcher
  (``span_id`` = the LLM call's span), which also emits the OpenTelemetry
  ``gen_ai.evaluation.result`` event;
- on the response: ``additional_kwargs["spill_guard"]`` (the verdict as JSON) and
  ``logprobs``, set by an event handler when LlamaIndex announces the call's end;
- to a guarded engine's collector, so :class:`GuardedQueryEngine` / :class:`GuardedChatEngine`
  enforce their policy on it;
- in :attr:`HuggingFaceLLMScorer.verdicts` and :meth:`HuggingFaceLLMScorer.verdict_for`.

A failure while scoring never reaches the user's call: it is counted, kept in
``last_error`` and warned about; the answer is returned unscored.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Sequence

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from pydantic import PrivateAttr

from spill_guard import SpillGuard, SpillModel
from spill_guard.capture.recorder import GenerationRecorder, RecordedAnswer
from spill_guard.errors import InvalidParameterError
from spill_guard.guard.verdict import Verdict
from spill_guard.models.loader import LoadedModel
from spill_guard.policy import Flag
from spill_guard.report import ScoredAnswer, build_scored_answer
from spill_guard_llama_index.events import emit
from spill_guard_llama_index.generation import Generation, record
from spill_guard_llama_index.llm import token_logprobs

#: Spans (and verdicts) remembered per scorer; older ones are forgotten first.
SPAN_MEMORY = 4096
_CHAT_METHODS = ("chat", "stream_chat", "achat", "astream_chat")
_REGISTRY: dict[int, "HuggingFaceLLMScorer"] = {}  # id(torch model) -> its scorer


class SpillScoringWarning(UserWarning):
    """An answer of the instrumented LLM could not be scored (the answer itself was returned)."""


@dataclass(frozen=True)
class _Span:
    parent: str | None
    own: bool  # opened on the instrumented LLM object
    question: str | None
    chat: bool


class _SpanTracker(BaseSpanHandler):
    """Remembers every span's parent, and which spans are calls of the scorer's LLM."""

    _scorer: Any = PrivateAttr()

    def __init__(self, scorer: "HuggingFaceLLMScorer"):
        super().__init__()
        self._scorer = scorer

    @classmethod
    def class_name(cls) -> str:
        return "SpillSpanTracker"

    def new_span(self, id_: str, bound_args: Any, instance: Any = None, parent_span_id: str | None = None,
                 tags: Any = None, **kwargs: Any) -> None:
        own = instance is self._scorer.llm
        method = id_.split("-", 1)[0].rsplit(".", 1)[-1]
        question = _question(bound_args, chat=method in _CHAT_METHODS) if own else None
        self._scorer._remember_span(id_, _Span(parent_span_id, own, question, method in _CHAT_METHODS))
        return None  # no span object kept: LlamaIndex's open-span bookkeeping is not needed

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class _ResponseAnnotator(BaseEventHandler):
    """Puts the verdict on the response object when LlamaIndex announces a call's end."""

    _scorer: Any = PrivateAttr()

    def __init__(self, scorer: "HuggingFaceLLMScorer"):
        super().__init__()
        self._scorer = scorer

    @classmethod
    def class_name(cls) -> str:
        return "SpillResponseAnnotator"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if not isinstance(event, (LLMCompletionEndEvent, LLMChatEndEvent)) or event.response is None:
            return
        verdict = self._scorer.verdict_for(event.span_id)
        if verdict is None:
            return
        report = verdict.model_dump(mode="json")
        response = event.response
        response.additional_kwargs["spill_guard"] = report
        if isinstance(event, LLMChatEndEvent):
            response.message.additional_kwargs["spill_guard"] = report
        if response.logprobs is None and verdict.scored is not None:
            response.logprobs = token_logprobs(verdict.scored)


class HuggingFaceLLMScorer:
    """Scores every answer of one unmodified ``HuggingFaceLLM``; see the module docstring.

    Args:
        llm: the user's ``HuggingFaceLLM`` (any object with its ``_model``/``_tokenizer``).
        guard: a :class:`~spill_guard.SpillGuard` built on the same torch model
            (``SpillGuard(SpillModel(loaded))`` where ``llm`` uses ``loaded.model``); or
        threshold / calibration / spec / locator / name: the rule, for a guard built here on
            the LLM's model (``name`` names the model in reports; the packaged calibration is found
            by that name or by the model's fingerprint, whatever path it was loaded from);
        metrics: Prometheus metrics for that guard (``True``, a ``CollectorRegistry`` or a
            ``VerdictMetrics``); with ``guard=``, give ``SpillGuard(..., metrics=...)`` instead.
    """

    def __init__(self, llm: Any, guard: SpillGuard | None = None, *, threshold: float | None = None,
                 calibration: Any = None, spec: str | None = None, locator: Any = None, name: str | None = None,
                 metrics: Any = None):
        model, tokenizer = getattr(llm, "_model", None), getattr(llm, "_tokenizer", None)
        if model is None or tokenizer is None or not callable(getattr(model, "generate", None)):
            raise InvalidParameterError(
                f"llm={type(llm).__name__} is not a local HuggingFaceLLM (no torch model with generate()); pass "
                "llama_index.llms.huggingface.HuggingFaceLLM(model=..., tokenizer=...)."
            )
        self.llm = llm
        self.guard = self._guard(model, tokenizer, guard, threshold, calibration, spec, locator, name, metrics)
        self._lock = threading.Lock()
        self._spans: OrderedDict[str, _Span] = OrderedDict()
        self._by_span: OrderedDict[str, Verdict] = OrderedDict()
        self._ordered: deque[Verdict] = deque(maxlen=SPAN_MEMORY)
        self.scored = 0
        self.failures = 0
        self.last_error: str | None = None
        with _lock:
            if id(model) in _REGISTRY:
                raise InvalidParameterError("this LLM's model is already instrumented; call uninstrument() on the "
                                            "existing scorer first (scorer_of(llm) finds it).")
            _REGISTRY[id(model)] = self
        try:
            spill = self.guard.model
            self.recorder = GenerationRecorder.for_model(model, tokenizer, betas=spill.betas,
                                                         stats=self.guard.capture_stats,
                                                         final_step="auto")  # the guard never reads a textless stop token's Δ
        except BaseException:
            with _lock:
                del _REGISTRY[id(model)]
            raise
        self._tracker, self._annotator = _SpanTracker(self), _ResponseAnnotator(self)
        root = get_dispatcher()
        root.add_span_handler(self._tracker)
        root.add_event_handler(self._annotator)
        self._stop = self.recorder.watch(self._key, self._deliver)

    @staticmethod
    def _guard(model: Any, tokenizer: Any, guard: SpillGuard | None, threshold: Any, calibration: Any,
               spec: Any, locator: Any, name: str | None, metrics: Any = None) -> SpillGuard:
        if guard is not None:
            if not isinstance(guard, SpillGuard):
                raise InvalidParameterError(f"guard must be a spill_guard.SpillGuard, got {guard!r}.")
            if any(v is not None for v in (threshold, calibration, spec, locator, name, metrics)):
                raise InvalidParameterError("pass either guard=... or threshold/calibration/spec/locator/name/metrics, "
                                            "not both (metrics: SpillGuard(..., metrics=...)).")
            if guard.model.loaded.model is not model:
                raise InvalidParameterError(
                    "guard.model wraps another torch model than the LLM's; build the guard on the LLM's model: "
                    "SpillGuard(SpillModel(LoadedModel(model=llm._model, tokenizer=llm._tokenizer, ...))), "
                    "or pass threshold=/calibration= instead of guard=."
                )
            return guard
        label = name or getattr(model.config, "name_or_path", None) or "huggingface-llm"
        loaded = LoadedModel(model=model, tokenizer=tokenizer, name=str(label), device=model.device, dtype=model.dtype)
        return SpillGuard(SpillModel(loaded), threshold=threshold, calibration=calibration, spec=spec, locator=locator,
                          metrics=metrics)

    # -- what users read ------------------------------------------------------------------
    @property
    def verdicts(self) -> list[Verdict]:
        """The verdicts of the most recent calls, oldest first (at most SPAN_MEMORY calls)."""
        with self._lock:
            return list(self._ordered)

    def verdict_for(self, span_id: str | None) -> Verdict | None:
        """The verdict of the LLM call in span ``span_id`` or in any span below it (the latest one)."""
        with self._lock:
            return self._by_span.get(span_id) if span_id else None

    def uninstrument(self) -> None:
        """Stop scoring this LLM (the model's generate stays wrapped, untouched when unwatched)."""
        self._stop()
        root = get_dispatcher()
        root.span_handlers = [h for h in root.span_handlers if h is not self._tracker]
        root.event_handlers = [h for h in root.event_handlers if h is not self._annotator]
        with _lock:
            if _REGISTRY.get(id(self.recorder.model)) is self:
                del _REGISTRY[id(self.recorder.model)]

    def __enter__(self) -> "HuggingFaceLLMScorer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstrument()

    def __repr__(self) -> str:
        return f"HuggingFaceLLMScorer(guard={self.guard!r}, scored={self.scored}, failures={self.failures})"

    # -- span bookkeeping -------------------------------------------------------------------
    def _remember_span(self, span_id: str, span: _Span) -> None:
        with self._lock:
            self._spans[span_id] = span
            while len(self._spans) > SPAN_MEMORY:
                self._spans.popitem(last=False)

    def _key(self) -> str | None:
        """The recorder's key: the active span id, when that span is a call of our LLM."""
        span_id = active_span_id.get()
        with self._lock:
            span = self._spans.get(span_id) if span_id else None
        return span_id if span is not None and span.own else None

    def _chain(self, span_id: str) -> list[tuple[str, _Span]]:
        chain, seen = [], set()
        while span_id and span_id in self._spans and span_id not in seen:
            seen.add(span_id)
            chain.append((span_id, self._spans[span_id]))
            span_id = self._spans[span_id].parent
        return chain

    # -- delivery (in the generating thread) --------------------------------------------------
    def _deliver(self, span_id: str, rows: Sequence[RecordedAnswer]) -> None:
        for row in rows:
            try:
                self._judge(span_id, row)
            except Exception as exc:  # the user's call goes on; the failure is counted and shown
                error = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.failures += 1
                    self.last_error = error
                warnings.warn(f"an answer of {type(self.llm).__name__} was not scored ({error}); "
                              "it was returned unchanged.", SpillScoringWarning, stacklevel=2)

    def _judge(self, span_id: str, row: RecordedAnswer) -> None:
        if row.trace is None:
            raise RuntimeError(row.failure or "no trace was recorded")
        sm = self.guard.model
        scored: ScoredAnswer = build_scored_answer(tokenizer=sm.tokenizer, model_name=sm.loaded.name,
                                                   prompt_ids=row.prompt_ids, trace=row.trace,
                                                   stopped_on_eos=row.stopped_on_eos, beta=sm.beta)
        with self._lock:
            chain = self._chain(span_id)
        question = _chain_question(chain) or sm.tokenizer.decode(row.prompt_ids, skip_special_tokens=True)
        strategy = "sampled" if (getattr(self.llm, "generate_kwargs", None) or {}).get("do_sample") else "greedy"
        verdict = self.guard.verdict_from(Flag().apply(self.guard.assess(scored, question, strategy=strategy)),
                                          question=question)
        with self._lock:
            for sid, _ in chain:  # the call's span and every span above it map to this latest verdict
                self._by_span[sid] = verdict
                self._by_span.move_to_end(sid)
            while len(self._by_span) > SPAN_MEMORY:
                self._by_span.popitem(last=False)
            self._ordered.append(verdict)
            self.scored += 1
        emit(verdict, strategy=strategy, span_id=span_id, metrics=self.guard.metrics)
        record(Generation(messages=(), question=question, scored=scored, verdict=verdict, strategy=strategy))


_lock = threading.Lock()


def _question(bound_args: Any, *, chat: bool) -> str | None:
    """The user's text of a call: a completion's prompt, or a chat's last user message."""
    arguments = getattr(bound_args, "arguments", {}) or {}
    if not chat:
        prompt = arguments.get("prompt")
        return prompt if isinstance(prompt, str) else None
    for message in reversed(list(arguments.get("messages") or [])):
        if getattr(getattr(message, "role", None), "value", None) == "user":
            return message.content or ""
    return None


def _chain_question(chain: list[tuple[str, _Span]]) -> str | None:
    """The outermost chat call's user message among our LLM's spans, else the innermost prompt."""
    own = [span for _, span in chain if span.own and span.question is not None]
    chats = [span.question for span in own if span.chat]
    return chats[-1] if chats else (own[0].question if own else None)


def instrument(llm: Any, guard: SpillGuard | None = None, **rule: Any) -> HuggingFaceLLMScorer:
    """Score every answer of ``llm`` (an unmodified ``HuggingFaceLLM``); returns its scorer."""
    return HuggingFaceLLMScorer(llm, guard, **rule)


def scorer_of(llm: Any) -> HuggingFaceLLMScorer | None:
    """The scorer :func:`instrument` attached to ``llm``'s model, if any."""
    model = getattr(llm, "_model", None)
    return _REGISTRY.get(id(model)) if model is not None else None
