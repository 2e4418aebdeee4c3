"""``SpillCallbackHandler``: observe spill reports in any chain, count them, log flagged answers.

It only observes. LangChain swallows exceptions raised in callbacks (unless a handler sets
``raise_error``), so a callback cannot enforce anything reliably: enforcement lives in
:class:`~spill_guard_langchain.SpillGuardedRunnable` and the agent middleware.

State is keyed by ``run_id`` and guarded by one lock, so one handler can serve concurrent
``batch`` calls, threads and async tasks.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from spill_guard.guard import Verdict

from spill_guard_langchain.report import TOKENS_KEY, verdict_of
from spill_guard_langchain.review_sink import open_sink, write_verdict


@dataclass
class _RunState:
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    token_energies: list[dict[str, Any]] = field(default_factory=list)


class SpillCallbackHandler(BaseCallbackHandler):
    """Collect the verdict of every :class:`SpillChatModel` answer in the runs it watches.

    Args:
        log: review log path (``.jsonl`` / ``.sqlite``) or sink; flagged answers are written
            with the run's tags and metadata. ``None``: no log.
        log_all: write every answer, not only flagged ones.

    Attributes read after (or during) a run: :attr:`counts` (``answers``, ``flagged``,
    ``passed``, ``unscored`` (no spill report: another model), ``errors``, ``logged``,
    ``streamed_tokens``), :attr:`verdicts` (in completion order) and
    :meth:`streamed_energies` for a run still in progress.
    """

    raise_error = False  # observing only: a logging failure must not break the user's chain

    def __init__(self, log: Any = None, *, log_all: bool = False):
        super().__init__()
        self.sink = open_sink(log)
        self.log_all = log_all
        self._lock = threading.Lock()
        self._runs: dict[UUID, _RunState] = {}
        self._counts: Counter[str] = Counter()
        self._verdicts: list[Verdict] = []
        self.record_ids: list[str] = []

    # -- LangChain hooks ---------------------------------------------------------------------
    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[Any]], *, run_id: UUID,
                            tags: list[str] | None = None, metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        with self._lock:
            self._runs[run_id] = _RunState(list(tags or []), dict(metadata or {}))

    def on_llm_new_token(self, token: str, *, chunk: Any = None, run_id: UUID, **kwargs: Any) -> None:
        entries = (getattr(getattr(chunk, "message", None), "response_metadata", None) or {}).get(TOKENS_KEY)
        with self._lock:
            state = self._runs.setdefault(run_id, _RunState())
            if entries:
                state.token_energies.extend(entries)
                self._counts["streamed_tokens"] += len(entries)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            state = self._runs.pop(run_id, None) or _RunState()
        verdicts = [verdict_of(g) for gens in response.generations for g in gens]
        for verdict in verdicts:
            record_id = self._log(verdict, state) if verdict is not None else None
            with self._lock:
                if verdict is None:
                    self._counts["unscored"] += 1
                    continue
                self._counts["answers"] += 1
                self._counts["flagged" if verdict.flagged else "passed"] += 1
                self._verdicts.append(verdict)
                if record_id is not None:
                    self._counts["logged"] += 1
                    self.record_ids.append(record_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._runs.pop(run_id, None)
            self._counts["errors"] += 1

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

    def streamed_energies(self, run_id: UUID) -> list[dict[str, Any]]:
        """Per-token energies streamed so far by a run that has not ended yet (empty otherwise)."""
        with self._lock:
            state = self._runs.get(run_id)
            return list(state.token_energies) if state else []

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()

    def _log(self, verdict: Verdict, state: _RunState) -> str | None:
        if self.sink is None or not (self.log_all or verdict.flagged):
            return None
        return write_verdict(self.sink, verdict, tags=state.tags, metadata=state.metadata)
