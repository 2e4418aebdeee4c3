"""Open the review log a wrapper writes to: a path (``.jsonl`` / ``.sqlite``) or a ready sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spill_guard.errors import InvalidParameterError


def open_sink(log: Any) -> Any:
    """``None`` → no log; a path → :func:`spill_guard.review.open_log`; an object with ``write`` → itself."""
    if log is None:
        return None
    if isinstance(log, (str, Path)):
        from spill_guard.review import open_log

        return open_log(log)
    if callable(getattr(log, "write", None)):
        return log
    raise InvalidParameterError(
        f"log must be a path (.jsonl / .sqlite) or a review sink with .write(record), got {log!r}."
    )


def write_verdict(sink: Any, verdict: Any, *, tags: Any = (), metadata: dict[str, Any] | None = None) -> str:
    """Write ``verdict`` with the run's tags and metadata; returns the record id."""
    from spill_guard.review import ReviewRecord

    clean = {str(k): v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else repr(v)
             for k, v in (metadata or {}).items()}  # run metadata may hold objects; keep their repr
    record = ReviewRecord.from_verdict(verdict, model=verdict.model, tags=tuple(tags), metadata=clean)
    return sink.write(record)
