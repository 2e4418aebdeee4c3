"""``SpillReviewHandler``: a LlamaIndex event handler writing flagged answers to a review log.

It listens for :class:`~spill_guard_llama_index.events.SpillScoredEvent` and writes a
:class:`~spill_guard.review.ReviewRecord` (with the full scored answer, so the answer can be
re-scored and labelled later) for each flagged one — or every one with ``only_flagged=False``.
LlamaIndex swallows handler errors; this handler keeps the last one in ``last_error`` so a
broken log does not go unnoticed.
"""

from __future__ import annotations

import threading
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from pydantic import PrivateAttr

from spill_guard.errors import InvalidParameterError
from spill_guard.guard.recording import LogEntry, VerdictLog
from spill_guard_llama_index.events import SpillScoredEvent


class SpillReviewHandler(BaseEventHandler):
    """Write flagged :class:`SpillScoredEvent` answers to ``log`` (a ``.jsonl``/``.sqlite`` path or a sink).

    Register it: ``get_dispatcher().add_event_handler(SpillReviewHandler(log="review.jsonl"))``.
    """

    only_flagged: bool = True
    tags: tuple[str, ...] = ("llama_index",)
    written: int = 0
    last_error: str | None = None
    _log: Any = PrivateAttr()
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, log: Any, *, only_flagged: bool = True, tags: tuple[str, ...] = ("llama_index",)):
        # pydantic: this subclass's own fields; the base __init__ signature does not list them
        super().__init__(only_flagged=only_flagged, tags=tuple(tags))  # type: ignore[call-arg]
        if log is None:
            raise InvalidParameterError(
                "log must be a .jsonl/.sqlite path or a review sink with .write(record), got None."
            )
        # Events are observed where they are emitted; this handler only writes (the core's one record write).
        self._log = VerdictLog(log, log_all=True, on_log_error="raise")

    @classmethod
    def class_name(cls) -> str:
        return "SpillReviewHandler"

    def handle(self, event: Any, **kwargs: Any) -> str | None:
        """Write ``event`` if it is a (flagged) SpillScoredEvent; returns the record id."""
        if not isinstance(event, SpillScoredEvent) or (self.only_flagged and not event.flagged):
            return None
        metadata = {"event_id": event.id_, "span_id": event.span_id, "strategy": event.strategy}
        with self._lock:
            [failure] = self._log.write([LogEntry(event.verdict, self.tags, metadata)])
            if failure is None:
                self.written += 1
        if failure is not None:  # kept visible: LlamaIndex would drop it silently
            self.last_error = f"{type(failure).__name__}: {failure}"
            raise failure
        return event.verdict.record_id

    def close(self) -> None:
        self._log.close()
