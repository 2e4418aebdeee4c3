"""``SpillCallbackHandler``: observe spill reports in any chain, count them, log flagged answers.

Built with ``model=`` (a user's unmodified ``ChatHuggingFace`` / ``HuggingFacePipeline``), it
also scores that model's answers itself from raw logits (see :mod:`spill_guard_langchain.dropin`)
and attaches the report to each run's generation, as :class:`SpillChatModel` does. Inside a
retry of :class:`~spill_guard_langchain.SpillGuardedRunnable`, that model's run is regenerated
as the attempt (its prompt and sampling), so a drop-in retries like every other door.

It only observes. LangChain swallows exceptions raised in callbacks (unless a handler sets
``raise_error``), so a callback cannot enforce anything reliably: enforcement lives in
:class:`~spill_guard_langchain.SpillGuardedRunnable` and the agent middleware.

State is keyed by ``run_id`` and guarded by one lock, so one handler can serve concurrent
``batch`` calls, threads and async tasks.
"""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from spill_guard.errors import InvalidParameterError
from spill_guard.guard import Verdict
from spill_guard.observability.verdict_metrics import resolve_metrics
from spill_guard_langchain.dropin import DropInScorer
from spill_guard_langchain.report import TOKENS_KEY, verdict_of
from spill_guard_langchain.review_sink import run_metadata, verdict_log


class UnscoredRunWarning(UserWarning):
    """A run of the drop-in-guarded model ended without a verdict; the message says why."""


@dataclass
class _RunState:
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    token_energies: list[dict[str, Any]] = field(default_factory=list)


class SpillCallbackHandler(BaseCallbackHandler):
    """Collect the verdict of every scored answer in the runs it watches.

    Args:
        log: review log path (``.jsonl`` / ``.sqlite``) or sink; flagged answers are written
            with the run's tags and metadata. ``None``: no log.
        log_all: write every answer, not only flagged ones.
        model: a ``ChatHuggingFace`` or ``HuggingFacePipeline`` (local transformers pipeline) to
            score in place: its torch model's ``generate`` is wrapped once, and every run of it
            this handler sees is scored from the raw logits of the pass that generated it.
            Without ``model``, only :class:`SpillChatModel` answers (which carry their own report) count.
        guard, threshold, calibration, spec, locator, name: the rule judging ``model``'s answers
            (as for :class:`SpillChatModel`; ``name`` picks a packaged calibration).
        metrics: count every verdict it collects in Prometheus metrics (``pip install
            'spill-guard[metrics]'``): ``True`` (prometheus-client's default registry), a
            ``CollectorRegistry`` or a ``VerdictMetrics``. Default: ``guard``'s metrics, if any.

    Attributes read after (or during) a run: :attr:`counts` (``answers``, ``flagged``,
    ``passed``, ``unscored`` (no report: another model, or a drop-in run that could not be
    attributed, with a warning saying why), ``errors``, ``logged``, ``streamed_tokens``),
    :attr:`verdicts` (in completion order), :meth:`verdict_for` a ``run_id``, and
    :meth:`streamed_energies` for a run still in progress.
    """

    raise_error = False  # observing only: a logging or scoring failure must not break the user's chain
    # Async runs: start events run in the event loop's thread, never in the thread that generates,
    # so the recorder routes by prompt rather than by thread (see spill_guard.capture.recorder).
    run_inline = True

    def __init__(
        self,
        log: Any = None,
        *,
        log_all: bool = False,
        model: Any = None,
        guard: Any = None,
        threshold: float | None = None,
        calibration: Any = None,
        spec: str | None = None,
        locator: Any = None,
        name: str | None = None,
        metrics: Any = None,
    ):
        super().__init__()
        if model is None:
            rule = {
                "guard": guard,
                "threshold": threshold,
                "calibration": calibration,
                "spec": spec,
                "locator": locator,
                "name": name,
            }
            if any(v is not None for v in rule.values()):
                raise InvalidParameterError(
                    f"{sorted(k for k, v in rule.items() if v is not None)} only apply with model=<ChatHuggingFace or "
                    "HuggingFacePipeline>; a SpillChatModel carries its own rule."
                )
        self.metrics = resolve_metrics(metrics) if metrics is not None else getattr(guard, "metrics", None)
        # With model=: the drop-in checks "guard or rule arguments, not both" (spill_guard.guard.dropin).
        self.dropin = (
            DropInScorer(
                model, guard=guard, threshold=threshold, calibration=calibration, spec=spec, locator=locator, name=name
            )
            if model is not None
            else None
        )
        # An observer never breaks the user's chain: a verdict the log cannot record is warned about.
        self.recorder = verdict_log(log, log_all=log_all, on_log_error="warn", metrics=self.metrics)
        self.sink = self.recorder.sink
        self.log_all = log_all
        self._lock = threading.Lock()
        self._runs: dict[UUID, _RunState] = {}
        self._counts: Counter[str] = Counter()
        self._verdicts: list[Verdict] = []
        self._by_run: dict[UUID, Verdict] = {}
        self.unscored_reasons: dict[UUID, str] = {}
        self.record_ids: list[str] = []

    # -- LangChain hooks ---------------------------------------------------------------------
    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            self._runs[run_id] = _RunState(list(tags or []), dict(metadata or {}))
        if self.dropin is not None and len(prompts) == 1:  # BaseLLM starts one run per prompt
            self._guarded(run_id, self.dropin.expect_prompt, run_id, prompts[0])

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            self._runs[run_id] = _RunState(list(tags or []), dict(metadata or {}))
        if self.dropin is not None and len(messages) == 1:
            self._guarded(run_id, self.dropin.expect_chat, run_id, messages[0])

    def on_llm_new_token(
        self, token: str | list[str | dict[str, Any]], *, chunk: Any = None, run_id: UUID, **kwargs: Any
    ) -> None:
        entries = (getattr(getattr(chunk, "message", None), "response_metadata", None) or {}).get(TOKENS_KEY)
        with self._lock:
            state = self._runs.setdefault(run_id, _RunState())
            if entries:
                state.token_energies.extend(entries)
                self._counts["streamed_tokens"] += len(entries)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            state = self._runs.pop(run_id, None) or _RunState()
        generations = [g for gens in response.generations for g in gens]
        verdicts = [verdict_of(g) for g in generations]
        if self.dropin is not None:
            if len(generations) == 1 and verdicts[0] is None:
                verdicts[0] = self._guarded(run_id, self._score_dropin, run_id, generations[0])
            else:  # a SpillChatModel answered (it reports itself), or an n>1 run: nothing to claim
                self.dropin.forget(run_id)
        for verdict in verdicts:
            record_id = self._log(verdict, state) if verdict is not None else None
            with self._lock:
                if verdict is None:
                    self._counts["unscored"] += 1
                    continue
                self._counts["answers"] += 1
                self._counts["flagged" if verdict.flagged else "passed"] += 1
                self._verdicts.append(verdict)
                self._by_run[run_id] = verdict
                if record_id is not None:
                    self._counts["logged"] += 1
                    self.record_ids.append(record_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._runs.pop(run_id, None)
            self._counts["errors"] += 1
        if self.dropin is not None:
            self.dropin.forget(run_id)

    # -- reading -----------------------------------------------------------------------------
    @property
    def counts(self) -> dict[str, int]:
        """A snapshot of the counters (every key present, zero when nothing happened)."""
        keys = ("answers", "flagged", "passed", "unscored", "errors", "logged", "streamed_tokens")
        with self._lock:
            return {k: int(self._counts[k]) for k in keys}

    @property
    def verdicts(self) -> list[Verdict]:
        with self._lock:
            return list(self._verdicts)

    def verdict_for(self, run_id: UUID) -> Verdict | None:
        """The verdict of the run ``run_id`` (``None`` if it had none, or has not ended)."""
        with self._lock:
            return self._by_run.get(run_id)

    def streamed_energies(self, run_id: UUID) -> list[dict[str, Any]]:
        """Per-token energies streamed so far by a run that has not ended yet (empty otherwise)."""
        with self._lock:
            state = self._runs.get(run_id)
            return list(state.token_energies) if state else []

    def close(self) -> None:
        self.recorder.close()

    def _score_dropin(self, run_id: UUID, generation: Any) -> Verdict | None:
        if self.dropin is None:  # called only with model=
            return None
        verdict, reason = self.dropin.finish(run_id, generation)
        if verdict is None:
            with self._lock:
                self.unscored_reasons[run_id] = reason
            warnings.warn(
                f"spill_guard: run {run_id} of the guarded HuggingFace model was not scored: {reason}.",
                UnscoredRunWarning,
                stacklevel=2,
            )
        return verdict

    def _guarded(self, run_id: UUID, step: Any, *args: Any) -> Any:
        """Run a drop-in step; a failure is counted and warned about, never raised into the user's call."""
        try:
            return step(*args)
        except Exception as exc:  # noqa: BLE001 - observing must never break the chain
            with self._lock:
                self._counts["errors"] += 1
                self.unscored_reasons[run_id] = f"{type(exc).__name__}: {exc}"
            if self.dropin is not None:
                self.dropin.forget(run_id)
            warnings.warn(
                f"spill_guard: scoring run {run_id} failed ({type(exc).__name__}: {exc}); the answer is "
                "returned unscored.",
                UnscoredRunWarning,
                stacklevel=2,
            )
            return None

    def _log(self, verdict: Verdict, state: _RunState) -> str | None:
        return self.recorder.record(verdict, tags=state.tags, metadata=run_metadata(state.metadata))
