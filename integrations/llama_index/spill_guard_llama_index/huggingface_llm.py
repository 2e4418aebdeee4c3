"""Score the answers of a user's unmodified ``HuggingFaceLLM`` (llama-index-llms-huggingface).

``instrument(llm, guard=...)`` leaves the LLM object as it is and wraps its torch model's
``generate`` once, through the core's :class:`~spill_guard.capture.recorder.GenerationRecorder`
(route 3: keyed by a context variable; the core's :class:`~spill_guard.guard.dropin.DropIn`
builds the guard and the recorder). The key is LlamaIndex's active span id:
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

Each answer's :class:`~spill_guard_llama_index.generation.Generation` keeps the conversation of
the call that made it (the outermost ``chat`` of this LLM, else its ``complete`` prompt), so a
guarded engine can retry: :meth:`HuggingFaceLLMScorer.reask` asks the same LLM the attempt's
conversation (``chat``, or ``complete`` as the call did) while the core's drop-in regenerates
the torch model with the attempt's sampling (:meth:`~spill_guard.guard.dropin.DropIn.regenerating`,
seeded as the core's transformers backend seeds), and returns the new answer, scored.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import ChatResponse
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from pydantic import PrivateAttr

from spill_guard import SpillGuard
from spill_guard.capture.recorder import RecordedAnswer
from spill_guard.errors import CaptureError, InvalidInputError, InvalidParameterError
from spill_guard.guard.dropin import DropIn
from spill_guard.guard.judge import Generated
from spill_guard.guard.verdict import Verdict
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import CHAT_ROLES, Prompt
from spill_guard_llama_index.events import emit
from spill_guard_llama_index.generation import Generation, Message, collect, record
from spill_guard_llama_index.llm import token_logprobs

#: Spans (and verdicts) remembered per scorer; older ones are forgotten first.
SPAN_MEMORY = 4096
_CHAT_METHODS = ("chat", "stream_chat", "achat", "astream_chat")
_REGISTRY: dict[int, HuggingFaceLLMScorer] = {}  # id(torch model) -> its scorer


class SpillScoringWarning(UserWarning):
    """An answer of the instrumented LLM could not be scored (the answer itself was returned)."""


@dataclass(frozen=True)
class _Span:
    parent: str | None
    own: bool  # opened on the instrumented LLM object
    question: str | None
    chat: bool
    messages: tuple[Message, ...] = ()  # the call's conversation (own spans; empty: not representable)
    formatted: bool = False  # a completion's formatted= argument


class _SpanTracker(BaseSpanHandler):
    """Remembers every span's parent, and which spans are calls of the scorer's LLM."""

    _scorer: Any = PrivateAttr()

    def __init__(self, scorer: HuggingFaceLLMScorer):
        super().__init__()
        self._scorer = scorer

    @classmethod
    def class_name(cls) -> str:
        return "SpillSpanTracker"

    def new_span(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        parent_span_id: str | None = None,
        tags: Any = None,
        **kwargs: Any,
    ) -> None:
        own = instance is self._scorer.llm
        method = id_.split("-", 1)[0].rsplit(".", 1)[-1]
        chat = method in _CHAT_METHODS
        question = _question(bound_args, chat=chat) if own else None
        messages = _messages(bound_args, chat=chat) if own else ()
        formatted = bool(_argument(bound_args, "formatted", 1)) if own and not chat else False
        self._scorer._remember_span(id_, _Span(parent_span_id, own, question, chat, messages, formatted))
        return None  # no span object kept: LlamaIndex's open-span bookkeeping is not needed

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class _ResponseAnnotator(BaseEventHandler):
    """Puts the verdict on the response object when LlamaIndex announces a call's end."""

    _scorer: Any = PrivateAttr()

    def __init__(self, scorer: HuggingFaceLLMScorer):
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
        if isinstance(response, ChatResponse):
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

    def __init__(
        self,
        llm: Any,
        guard: SpillGuard | None = None,
        *,
        threshold: float | None = None,
        calibration: Any = None,
        spec: str | None = None,
        locator: Any = None,
        name: str | None = None,
        metrics: Any = None,
    ):
        model, tokenizer = getattr(llm, "_model", None), getattr(llm, "_tokenizer", None)
        if model is None or tokenizer is None or not callable(getattr(model, "generate", None)):
            raise InvalidParameterError(
                f"llm={type(llm).__name__} is not a local HuggingFaceLLM (no torch model with generate()); pass "
                "llama_index.llms.huggingface.HuggingFaceLLM(model=..., tokenizer=...)."
            )
        self.llm = llm
        with _lock:
            if id(model) in _REGISTRY:
                raise InvalidParameterError(
                    "this LLM's model is already instrumented; call uninstrument() on the "
                    "existing scorer first (scorer_of(llm) finds it)."
                )
            _REGISTRY[id(model)] = self
        try:  # the guard (given, or built on the LLM's model) and the model's recorder: the core's drop-in
            self.dropin = DropIn(
                model,
                tokenizer,
                who="instrument(llm)",
                where="llm._model",
                default_name=str(getattr(model.config, "name_or_path", None) or "huggingface-llm"),
                guard=guard,
                threshold=threshold,
                calibration=calibration,
                spec=spec,
                locator=locator,
                name=name,
                metrics=metrics,
            )
        except BaseException:
            with _lock:
                del _REGISTRY[id(model)]
            raise
        self.guard, self.recorder = self.dropin.guard, self.dropin.recorder
        self._lock = threading.Lock()
        self._spans: OrderedDict[str, _Span] = OrderedDict()
        self._by_span: OrderedDict[str, Verdict] = OrderedDict()
        self._ordered: deque[Verdict] = deque(maxlen=SPAN_MEMORY)
        self.scored = 0
        self.failures = 0
        self.last_error: str | None = None
        self._tracker, self._annotator = _SpanTracker(self), _ResponseAnnotator(self)
        root = get_dispatcher()
        root.add_span_handler(self._tracker)
        root.add_event_handler(self._annotator)
        self._stop = self.recorder.watch(self._key, self._deliver)

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

    def reask(self, generation: Generation, prompt: Prompt, params: GenerationParams) -> Generated:
        """A retry attempt: ask the LLM ``prompt``'s conversation as ``generation``'s call asked its own
        (``chat``, or ``complete`` with the same ``formatted``), the torch model sampling with ``params``
        (:meth:`DropIn.regenerating`); returns the new answer, scored from the pass that made it.

        Raises :class:`CaptureError` when the answer could not be scored (the reason is the scorer's
        ``last_error``), :class:`InvalidParameterError` when ``generation`` cannot be re-asked.
        """
        from llama_index.core.base.llms.types import ChatMessage

        if not generation.messages:
            raise InvalidParameterError(
                "this answer's conversation was not recorded (roles other than "
                f"{list(CHAT_ROLES)} or non-text content), so it cannot be asked again."
            )
        failures = self.failures
        with collect() as collector, self.dropin.regenerating(params):
            if generation.kind == "chat":
                self.llm.chat([ChatMessage(role=m["role"], content=m["content"]) for m in prompt.messages])
            else:
                self.llm.complete(prompt.turns[-1][1], formatted=generation.formatted)
        made = collector.generations
        if not made:
            why = self.last_error if self.failures > failures else "no generate call of the model was recorded"
            raise CaptureError(f"the retry's answer of {type(self.llm).__name__} was not scored: {why}.")
        return Generated(made[-1].scored)

    def uninstrument(self) -> None:
        """Stop scoring this LLM (the model's generate stays wrapped, untouched when unwatched)."""
        self._stop()
        self.dropin.close()
        root = get_dispatcher()
        root.span_handlers = [h for h in root.span_handlers if h is not self._tracker]
        root.event_handlers = [h for h in root.event_handlers if h is not self._annotator]
        with _lock:
            if _REGISTRY.get(id(self.recorder.model)) is self:
                del _REGISTRY[id(self.recorder.model)]

    def __enter__(self) -> HuggingFaceLLMScorer:
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
        chain: list[tuple[str, _Span]] = []
        seen: set[str] = set()
        current: str | None = span_id
        while current and current in self._spans and current not in seen:
            seen.add(current)
            chain.append((current, self._spans[current]))
            current = self._spans[current].parent
        return chain

    # -- delivery (in the generating thread) --------------------------------------------------
    def _deliver(self, span_id: Hashable, rows: Sequence[RecordedAnswer]) -> None:
        # span_id is what _key returned: a LlamaIndex span id (str)
        for row in rows:
            try:
                self._judge(str(span_id), row)
            except Exception as exc:  # the user's call goes on; the failure is counted and shown
                error = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.failures += 1
                    self.last_error = error
                warnings.warn(
                    f"an answer of {type(self.llm).__name__} was not scored ({error}); it was returned unchanged.",
                    SpillScoringWarning,
                    stacklevel=2,
                )

    def _judge(self, span_id: str, row: RecordedAnswer) -> None:
        scored = self.dropin.scored(row)  # CaptureError when the row's capture failed
        with self._lock:
            chain = self._chain(span_id)
        question = _chain_question(chain) or self.guard.model.tokenizer.decode(row.prompt_ids, skip_special_tokens=True)
        params = self._call_params()
        kind, messages, formatted = _chain_call(chain)
        regenerated = self.dropin.regeneration()  # a retry's answer (reask): made with the attempt's params
        strategy = (regenerated or params).strategy
        verdict = self.dropin.judge(scored, question, strategy=strategy)
        with self._lock:
            for sid, _ in chain:  # the call's span and every span above it map to this latest verdict
                self._by_span[sid] = verdict
                self._by_span.move_to_end(sid)
            while len(self._by_span) > SPAN_MEMORY:
                self._by_span.popitem(last=False)
            self._ordered.append(verdict)
            self.scored += 1
        emit(verdict, strategy=strategy, span_id=span_id, metrics=self.guard.metrics)
        record(
            Generation(
                messages=messages,
                question=question,
                scored=scored,
                verdict=verdict,
                strategy=strategy,
                params=params,
                kind=kind,
                formatted=formatted,
            )
        )

    def _call_params(self) -> GenerationParams:
        """The LLM's generation settings as the core's params (its budget; its sampling, when valid)."""
        options = getattr(self.llm, "generate_kwargs", None) or {}
        budget = int(getattr(self.llm, "max_new_tokens", 0) or 0) or GenerationParams().max_new_tokens
        if not options.get("do_sample"):
            return GenerationParams(max_new_tokens=budget)
        try:
            return GenerationParams(
                max_new_tokens=budget, temperature=options.get("temperature", 1.0), top_p=options.get("top_p", 1.0)
            )
        except InvalidParameterError:  # the LLM's own settings, which transformers checks: judged as greedy
            return GenerationParams(max_new_tokens=budget)


_lock = threading.Lock()


def _argument(bound_args: Any, name: str, position: int) -> Any:
    """A call's argument ``name`` (at ``position`` after ``self``), also when LlamaIndex's callback decorators
    bound the call as ``(_self, *args, **kwargs)`` (``complete``: ``wrapped_llm_predict``)."""
    arguments = getattr(bound_args, "arguments", {}) or {}
    if name in arguments:
        return arguments[name]
    args, kwargs = arguments.get("args") or (), arguments.get("kwargs") or {}
    if isinstance(kwargs, dict) and name in kwargs:
        return kwargs[name]
    return args[position] if isinstance(args, tuple) and len(args) > position else None


def _question(bound_args: Any, *, chat: bool) -> str | None:
    """The user's text of a call: a completion's prompt, or a chat's last user message."""
    if not chat:
        prompt = _argument(bound_args, "prompt", 0)
        return prompt if isinstance(prompt, str) else None
    for message in reversed(list(_argument(bound_args, "messages", 0) or [])):
        if getattr(getattr(message, "role", None), "value", None) == "user":
            return message.content or ""
    return None


def _messages(bound_args: Any, *, chat: bool) -> tuple[Message, ...]:
    """The call's conversation as role dicts (a completion: one user turn); empty when the core cannot
    represent it (other roles, non-text content), so the answer is never re-asked as something else."""
    if not chat:
        prompt = _argument(bound_args, "prompt", 0)
        return ({"role": "user", "content": prompt},) if isinstance(prompt, str) and prompt.strip() else ()
    out = []
    for message in _argument(bound_args, "messages", 0) or []:
        role = getattr(getattr(message, "role", None), "value", None)
        content = getattr(message, "content", None)
        if role not in CHAT_ROLES or not isinstance(content, str):
            return ()
        out.append({"role": role, "content": content})
    try:
        Prompt.for_chat(None, out)  # the core's checks: a non-empty user turn, encodable text
    except InvalidInputError:
        return ()
    return tuple(out)


def _chain_call(chain: list[tuple[str, _Span]]) -> tuple[str, tuple[Message, ...], bool]:
    """``(kind, messages, formatted)`` of the call that made an answer: the outermost chat call of our LLM,
    else the innermost completion (as :func:`_chain_question` picks the question)."""
    own = [span for _, span in chain if span.own]
    chats = [span for span in own if span.chat]
    if chats:
        return "chat", chats[-1].messages, False
    if own:
        return "text", own[0].messages, own[0].formatted
    return "chat", (), False


def _chain_question(chain: list[tuple[str, _Span]]) -> str | None:
    """The outermost chat call's user message among our LLM's spans, else the innermost prompt."""
    own = [span for _, span in chain if span.own and span.question is not None]
    chats = [span.question for span in own if span.chat]
    return chats[-1] if chats else (own[0].question if own else None)


def instrument(
    llm: Any,
    guard: SpillGuard | None = None,
    *,
    threshold: float | None = None,
    calibration: Any = None,
    spec: str | None = None,
    locator: Any = None,
    name: str | None = None,
    metrics: Any = None,
) -> HuggingFaceLLMScorer:
    """Score every answer of ``llm`` (an unmodified ``HuggingFaceLLM``); returns its scorer
    (the arguments are :class:`HuggingFaceLLMScorer`'s)."""
    return HuggingFaceLLMScorer(
        llm, guard, threshold=threshold, calibration=calibration, spec=spec, locator=locator, name=name, metrics=metrics
    )


def scorer_of(llm: Any) -> HuggingFaceLLMScorer | None:
    """The scorer :func:`instrument` attached to ``llm``'s model, if any."""
    model = getattr(llm, "_model", None)
    return _REGISTRY.get(id(model)) if model is not None else None
