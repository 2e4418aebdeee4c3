"""Open the review log a wrapper writes to (a path or a ready sink), and record final verdicts in it."""

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


def record_verdict(sink: Any, verdict: Any, *, log_all: bool, tags: Any = (),
                   metadata: dict[str, Any] | None = None, metrics: Any = None) -> str | None:
    """A final verdict: its OpenTelemetry evaluation event and Prometheus ``metrics`` (a
    ``VerdictMetrics`` or None), as the core guard's ``log`` does, then the log.

    The record is written when there is a sink and ``log_all`` or the verdict is flagged; the
    record id is stored on the verdict and returned (``None`` when nothing was written).
    """
    from spill_guard.observability.otel import emit_evaluation

    emit_evaluation(verdict)  # a no-op without opentelemetry; never raises
    if metrics is not None:
        metrics.observe_verdict(verdict)  # once per verdict object, however many layers record it
    if sink is None or not (log_all or verdict.flagged):
        return None
    verdict.record_id = write_verdict(sink, verdict, tags=tags, metadata=metadata)
    return verdict.record_id
