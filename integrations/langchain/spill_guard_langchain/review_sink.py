"""Open the review log a wrapper writes to: a path (``.jsonl`` / ``.sqlite``) or a ready sink."""

from __future__ import annotations

from typing import Any


def open_sink(log: Any) -> Any:
    """``None`` → no log; a path → :func:`spill_guard.review.open_log`; an object with ``write`` → itself."""
    from spill_guard.review import as_sink

    return as_sink(log)


def write_verdict(sink: Any, verdict: Any, *, tags: Any = (), metadata: dict[str, Any] | None = None) -> str:
    """Write ``verdict`` with the run's tags and metadata; returns the record id."""
    from spill_guard.review import ReviewRecord

    clean = {str(k): v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else repr(v)
             for k, v in (metadata or {}).items()}  # run metadata may hold objects; keep their repr
    record = ReviewRecord.from_verdict(verdict, model=verdict.model, tags=tuple(tags), metadata=clean)
    return sink.write(record)
