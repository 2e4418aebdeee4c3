"""The review log: every guarded answer stored for humans to list, inspect, label and export.

    >>> from spill_guard.review import open_log, labelled_records
    >>> with open_log("guard.jsonl") as log:          # or guard.sqlite, or postgresql://host/db
    ...     log.write(record)                          # a ReviewRecord (ReviewRecord.from_verdict(v))
    ...     log.set_label(record.id[:8], "incorrect", note="wrong year", reviewer="amy", corrected_answer="1969")
    ...     feed = log.changes()                       # everything; log.changes(feed.cursor): only what is new
    >>> labelled_records("guard.jsonl")              # feeds calibration

Formats, guarantees and the record schema: docs/review-log.md.
"""

from spill_guard.review.base import ReviewSink
from spill_guard.review.changes import LogChanges, RecordSummary
from spill_guard.review.errors import (
    AmbiguousRecordIdError,
    InvalidLabelError,
    NotAReviewLogError,
    OutputIsTheLogError,
    RecordNotFoundError,
    ReviewLogBatchWriteError,
    ReviewLogError,
    ReviewLogNotFoundError,
    ReviewLogReadError,
    ReviewLogWarning,
    ReviewLogWriteError,
    UnsupportedLogFormatError,
)
from spill_guard.review.jsonl_sink import JsonlSink
from spill_guard.review.opening import as_sink, labelled_records, open_log
from spill_guard.review.postgres_sink import PostgresNotInstalledError, PostgresSink
from spill_guard.review.record import LABELS, LabelEvent, ReviewRecord
from spill_guard.review.redaction import DEFAULT_PII_PATTERNS, EMAIL_PATTERN, PHONE_PATTERN, redact_patterns
from spill_guard.review.sqlite_sink import SqliteSink

__all__ = [
    "as_sink",
    "AmbiguousRecordIdError",
    "DEFAULT_PII_PATTERNS",
    "EMAIL_PATTERN",
    "InvalidLabelError",
    "JsonlSink",
    "LABELS",
    "LabelEvent",
    "LogChanges",
    "NotAReviewLogError",
    "OutputIsTheLogError",
    "PHONE_PATTERN",
    "PostgresNotInstalledError",
    "PostgresSink",
    "RecordNotFoundError",
    "RecordSummary",
    "ReviewLogBatchWriteError",
    "ReviewLogError",
    "ReviewLogNotFoundError",
    "ReviewLogReadError",
    "ReviewLogWarning",
    "ReviewLogWriteError",
    "ReviewRecord",
    "ReviewSink",
    "SqliteSink",
    "UnsupportedLogFormatError",
    "labelled_records",
    "open_log",
    "redact_patterns",
]
