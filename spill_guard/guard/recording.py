"""Where a decided verdict goes: one :class:`VerdictLog` per guard, used by every door.

Recording a verdict is four things, always in this order: its OpenTelemetry
``gen_ai.evaluation.result`` event and Prometheus metrics (:func:`observe_verdict`), then its
review-log record (:meth:`VerdictLog.write`: the one place a verdict becomes a
:class:`~spill_guard.review.ReviewRecord`, redaction included, one sink call for a batch),
then ``on_log_error`` (:meth:`VerdictLog.settle`). :meth:`VerdictLog.record` does all of it
for one verdict and :meth:`VerdictLog.record_many` for a batch; a host that batches writes
across requests (the server) calls the three steps itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from spill_guard.errors import InvalidParameterError
from spill_guard.guard.verdict import Verdict, VerdictNotLoggedError, VerdictNotLoggedWarning
from spill_guard.observability.otel import emit_evaluation
from spill_guard.review import ReviewLogBatchWriteError, ReviewRecord, ReviewSink
from spill_guard.review.opening import as_sink

#: What to do when the review log cannot record a verdict.
ON_LOG_ERROR = ("raise", "warn")


@dataclass(frozen=True)
class LogEntry:
    """One verdict to log, with its record's tags and metadata."""

    verdict: Verdict
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] | None = None


def observe_verdict(verdict: Verdict, metrics: Any = None) -> None:
    """The OpenTelemetry event of ``verdict`` and, with ``metrics`` (a ``VerdictMetrics``), its counts."""
    emit_evaluation(verdict)  # a no-op without opentelemetry; never raises
    if metrics is not None:
        metrics.observe_verdict(verdict)


class VerdictLog:
    """Record verdicts: observe, write to the review log, apply ``on_log_error``.

    Args:
        log: review log path (``.jsonl``, ``.sqlite``, ``postgresql://...``), a sink, or ``None``.
        log_all: record every verdict (default) or only flagged ones.
        on_log_error: ``"raise"`` a :class:`VerdictNotLoggedError` carrying the verdict(s), or
            ``"warn"`` with a :class:`VerdictNotLoggedWarning` and go on (``record_id=None``).
        metrics: a ``VerdictMetrics`` counting every observed verdict, or ``None``.
    """

    def __init__(self, log: Any = None, *, log_all: bool = True, on_log_error: str = "raise", metrics: Any = None):
        if not isinstance(log_all, bool):
            raise InvalidParameterError(f"log_all must be True or False, got {log_all!r}.")
        if on_log_error not in ON_LOG_ERROR:
            raise InvalidParameterError(f"on_log_error must be 'raise' or 'warn', got {on_log_error!r}.")
        self.sink = as_sink(log)
        self.log_all = log_all
        self.on_log_error = on_log_error
        self.metrics = metrics

    def observe(self, verdict: Verdict) -> None:
        observe_verdict(verdict, self.metrics)

    def record(
        self, verdict: Verdict, *, tags: Sequence[str] = (), metadata: Mapping[str, Any] | None = None
    ) -> str | None:
        """Observe and write one verdict; its record id (also on ``verdict.record_id``), or ``None``."""
        self.observe(verdict)
        [failure] = self.write([LogEntry(verdict, tuple(tags), metadata)])
        return self.settle(verdict, failure)

    def record_many(self, entries: Sequence[LogEntry]) -> list[str | None]:
        """:meth:`record` for several verdicts with one sink call (one fsync, one transaction).

        With ``on_log_error="raise"``, one :class:`VerdictNotLoggedError` is raised after the rest
        were stored: ``.verdict`` is the first unlogged one, ``.verdicts`` every verdict given.
        """
        for entry in entries:
            self.observe(entry.verdict)
        failures = self.write(entries)
        ids: list[str | None] = []
        first: VerdictNotLoggedError | None = None
        for entry, failure in zip(entries, failures):
            try:
                ids.append(self.settle(entry.verdict, failure))
            except VerdictNotLoggedError as exc:
                ids.append(None)
                first = first or exc
        if first is not None:
            raise VerdictNotLoggedError(
                first.verdict, first.cause, verdicts=[e.verdict for e in entries]
            ) from first.cause
        return ids

    def write(self, entries: Sequence[LogEntry]) -> list[Exception | None]:
        """Write the records of ``entries`` with one sink call; per entry ``None`` or why it was not logged.

        Sets each logged verdict's ``record_id`` (``None`` when its write failed); raises nothing
        for a sink's failure (:meth:`settle` applies ``on_log_error``). Without a log, or for a
        passed verdict under ``log_all=False``, nothing is written and the entry gets ``None``.
        """
        failures: list[Exception | None] = [None] * len(entries)
        records: list[tuple[int, ReviewRecord]] = []
        for i, entry in enumerate(entries):
            if self.sink is None or not (self.log_all or entry.verdict.flagged):
                continue
            try:  # the one place a verdict becomes a record
                records.append(
                    (
                        i,
                        ReviewRecord.from_verdict(
                            entry.verdict,
                            model=entry.verdict.model,
                            tags=tuple(entry.tags),
                            metadata=dict(entry.metadata or {}),
                        ),
                    )
                )
            except Exception as exc:  # noqa: BLE001 - this verdict's failure only
                failures[i] = exc
        for (i, record), outcome in zip(records, self._write_records([r for _, r in records])):
            if isinstance(outcome, BaseException):
                failures[i] = cast(Exception, outcome)  # what a sink raised (Exceptions are caught, not BaseExceptions)
            else:
                entries[i].verdict.record_id = record.id
        for entry, failure in zip(entries, failures):
            if failure is not None:
                entry.verdict.record_id = None
        return failures

    def settle(self, verdict: Verdict, failure: Exception | None) -> str | None:
        """Apply ``on_log_error`` to one verdict's write: its record id, or ``None`` with a
        :class:`VerdictNotLoggedWarning`, or :class:`VerdictNotLoggedError`."""
        if failure is None:
            return verdict.record_id
        if self.on_log_error == "warn":
            warnings.warn(
                f"verdict on {verdict.question!r} returned without a review record: "
                f"{type(failure).__name__}: {failure}",
                VerdictNotLoggedWarning,
                stacklevel=3,
            )
            return None
        raise VerdictNotLoggedError(verdict, failure) from failure

    def close(self) -> None:
        close = getattr(self.sink, "close", None)  # your own sink may have nothing to close
        if close is not None:
            close()

    def _write_records(self, records: list[ReviewRecord]) -> list[Any]:
        """Per record, what the sink returned or the exception it raised: one ``write_many`` on a
        :class:`~spill_guard.review.ReviewSink`, one ``write`` per record on any other sink."""
        if not records:
            return []
        if isinstance(self.sink, ReviewSink):
            try:
                return self.sink.write_many(records)
            except ReviewLogBatchWriteError as exc:
                return exc.results
            except Exception as exc:  # noqa: BLE001 - any sink may fail; the decided verdicts must survive it
                return [exc] * len(records)
        outcomes: list[Any] = []
        for record in records:  # your own sink (anything with .write(record))
            try:
                outcomes.append(self.sink.write(record))
            except Exception as exc:  # noqa: BLE001 - as above
                outcomes.append(exc)
        return outcomes
