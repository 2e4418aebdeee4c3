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
