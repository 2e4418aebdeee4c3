"""Errors of the calibration package: bad labelled data, bad calibration files, mismatches.

All are :class:`~spill_guard.errors.SpillGuardError` (and ``ValueError``), so one ``except``
catches every deliberate failure of the library.
"""

from __future__ import annotations

from spill_guard.errors import SpillGuardError


class CalibrationError(SpillGuardError, ValueError):
    """Labelled scores cannot give a trustworthy threshold (one class only, too few, non-finite)."""


class CalibrationFileError(CalibrationError):
    """A calibration JSON file is unreadable, malformed, incomplete or of another schema version."""


class CalibrationMismatchError(CalibrationError):
    """A calibration is applied to another model, tokenizer, prompt, scorer or span locator.

    ``mismatches`` maps each differing field to ``(expected, got)``.
    """

    def __init__(self, message: str, *, mismatches: dict[str, tuple[object, object]] | None = None):
        super().__init__(message)
        self.mismatches = mismatches or {}
