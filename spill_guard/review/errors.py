"""Errors of the review log. All are :class:`~spill_guard.errors.SpillGuardError` subclasses."""

from __future__ import annotations

from spill_guard.errors import SpillGuardError


class ReviewLogError(SpillGuardError):
    """Root of the review-log errors (opening, reading, looking up, labelling)."""


class UnsupportedLogFormatError(ReviewLogError, ValueError):
    """The log path has a suffix that names no known sink."""


class ReviewLogNotFoundError(ReviewLogError, FileNotFoundError):
    """A command that only reads a log was pointed at a path that does not exist."""


class RecordNotFoundError(ReviewLogError, LookupError):
    """No record has the given id (or id prefix)."""


class AmbiguousRecordIdError(ReviewLogError, LookupError):
    """An id prefix matches more than one record."""


class InvalidLabelError(ReviewLogError, ValueError):
    """A label other than ``correct`` / ``incorrect`` was given."""


class ReviewLogWarning(UserWarning):
    """A log line was skipped on reading (torn by a killed writer, or not a record)."""


class NotARecordError(ReviewLogError, TypeError):
    """Something other than a :class:`ReviewRecord` was given to ``write``."""
