"""Errors of the review log. All are :class:`~spill_guard.errors.SpillGuardError` subclasses."""

from __future__ import annotations

from spill_guard.errors import SpillGuardError


class ReviewLogError(SpillGuardError):
    """Root of the review-log errors (opening, reading, looking up, labelling)."""


class UnsupportedLogFormatError(ReviewLogError, ValueError):
    """The log path has a suffix that names no known sink."""


class ReviewLogNotFoundError(ReviewLogError, FileNotFoundError):
    """A command that only reads a log was pointed at a path that does not exist."""


class NotAReviewLogError(ReviewLogError, ValueError):
    """The file exists but is not a log of the format its suffix names (e.g. JSONL named ``.db``)."""


class ReviewLogWriteError(ReviewLogError, OSError):
    """A record or label could not be stored: read-only file, full disk, unencodable record, ...

    The message names the log, the cause and the fix; the original exception is chained
    (``__cause__``) and its ``errno``, when it had one, is copied.
    """


class ReviewLogBatchWriteError(ReviewLogWriteError):
    """``write_many`` could not store some of its records; the others were stored.

    ``.results`` holds, per record in order, its id (stored) or the exception that kept it
    out (a :class:`ReviewLogWriteError`, or what a ``redact`` hook raised); ``.failures`` maps
    the index of each failed record to its exception. The first failure is chained.
    """

    def __init__(self, results: list):
        self.results = results
        self.failures = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
        first = next(iter(self.failures.values()), None)
        super().__init__(
            f"{len(self.failures)} of {len(results)} records could not be written to the review log; "
            f"the others were stored. First failure: {first}"
        )
        if isinstance(first, OSError) and first.errno is not None:
            self.errno = first.errno


class ReviewLogReadError(ReviewLogError, OSError):
    """The log exists but cannot be read (permissions, I/O error); the message says what to do."""


class RecordNotFoundError(ReviewLogError, LookupError):
    """No record has the given id (or id prefix)."""


class AmbiguousRecordIdError(ReviewLogError, LookupError):
    """An id prefix matches more than one record."""


class InvalidLabelError(ReviewLogError, ValueError):
    """A label other than ``correct`` / ``incorrect`` was given."""


class ReviewLogWarning(SpillGuardError, UserWarning):
    """A log line or row was skipped on reading (torn by a killed writer, or not a record).

    Also a ``SpillGuardError``, so ``-W error`` turns it into an error of the usual root.
    """


class NotARecordError(ReviewLogError, TypeError):
    """Something other than a :class:`ReviewRecord` was given to ``write``."""


class OutputIsTheLogError(ReviewLogError, ValueError):
    """``review export`` / ``review html`` was asked to write over the log it reads."""
