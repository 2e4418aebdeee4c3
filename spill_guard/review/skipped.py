"""Report what a reader skipped (torn lines, foreign JSON, bad rows) without flooding the user.

A log is read whole: one malformed line or row must not make the other records unreadable,
so readers skip it and say where it was. A log full of garbage (a binary file, a hand-edited
export) would otherwise print thousands of warnings, so after ``limit`` of them the rest
are counted and reported once at the end.
"""

from __future__ import annotations

import reprlib
import warnings

from pydantic import ValidationError

from spill_guard.review.errors import ReviewLogWarning

_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
_SHORT.maxother = 60


class SkipReport:
    """Collect skips during one read; :meth:`skip` per bad line/row, :meth:`finish` once at the end."""

    def __init__(self, location: object, *, limit: int = 20) -> None:
        self.location = str(location)
        self.limit = limit
        self.count = 0

    def skip(self, where: str, why: str) -> None:
        self.count += 1
        if self.count <= self.limit:
            warnings.warn(f"{where}: {why}", ReviewLogWarning, stacklevel=3)

    def finish(self) -> None:
        if self.count > self.limit:
            warnings.warn(
                f"{self.location}: {self.count - self.limit} more malformed lines or rows skipped "
                f"({self.count} in all; the first {self.limit} are reported above)",
                ReviewLogWarning,
                stacklevel=3,
            )


def short_repr(value: object) -> str:
    """``repr`` clipped to a few dozen characters: a warning names a bad value, it does not dump it."""
    return _SHORT.repr(value)


def first_problem(exc: ValidationError) -> str:
    """The first validation problem as ``field: message`` (never the offending value itself)."""
    first = exc.errors(include_input=False, include_url=False)[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or "line"
    message = str(first.get("msg", "invalid"))
    if len(message) > 160:
        message = message[:159] + "…"
    return f"{field}: {message} ({exc.error_count()} problem(s))"
