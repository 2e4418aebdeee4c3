"""``ReviewSink``: the small interface every review-log backend implements.

A sink stores :class:`ReviewRecord` objects and human labels. Writers (the guard, in any
number of threads or processes) only call :meth:`ReviewSink.write`; reviewers list, look up
and label. Backends implement five primitives; id-prefix lookup, redaction and label
validation live here once.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from spill_guard.review.errors import AmbiguousRecordIdError, RecordNotFoundError
from spill_guard.review.record import ReviewRecord, check_label, utc_now_iso

Redactor = Callable[[ReviewRecord], ReviewRecord]


class ReviewSink(abc.ABC):
    """Append records, read them back with their latest label, label them.

    ``redact`` (optional) is applied to every record before it is stored, e.g.
    :func:`spill_guard.review.redact_patterns`; the unredacted record never reaches disk.
    """

    def __init__(self, *, redact: Redactor | None = None) -> None:
        self.redact = redact

    # -- backend primitives -------------------------------------------------------------
    @abc.abstractmethod
    def _append(self, record: ReviewRecord) -> None:
        """Store one (already redacted) record durably; a record with an existing id replaces it."""

    @abc.abstractmethod
    def _append_label(self, record_id: str, label: str, note: str | None, labelled_at: str) -> None:
        """Store a label for an existing full id."""

    @abc.abstractmethod
    def records(self) -> list[ReviewRecord]:
        """Every record in write order, each with its latest label applied."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release files / connections. Idempotent."""

    def _ids_with_prefix(self, prefix: str) -> list[str]:
        """Up to two full ids starting with ``prefix`` (backends may override with an index)."""
        return [r.id for r in self.records() if r.id.startswith(prefix)][:2]

    # -- public API ---------------------------------------------------------------------
    def write(self, record: ReviewRecord) -> str:
        """Store ``record`` (after redaction) and return its id."""
        if not isinstance(record, ReviewRecord):
            raise TypeError(f"write() takes a ReviewRecord, got {type(record).__name__}; "
                            "build one with ReviewRecord(...) or ReviewRecord.from_verdict(verdict).")
        if self.redact is not None:
            record = self.redact(record)
        self._append(record)
        return record.id

    def resolve_id(self, id_or_prefix: str) -> str:
        """The one full id that equals or starts with ``id_or_prefix``."""
        prefix = (id_or_prefix or "").strip()
        if not prefix:
            raise RecordNotFoundError("an empty record id was given; pass an id or a prefix of one "
                                      "(see `spill-guard review list`).")
        matches = self._ids_with_prefix(prefix)
        if not matches:
            raise RecordNotFoundError(
                f"no record with id or id prefix {id_or_prefix!r} in {self.location}; "
                "list the ids with `spill-guard review list --log ...`."
            )
        if len(matches) > 1 and prefix not in matches:
            raise AmbiguousRecordIdError(
                f"id prefix {id_or_prefix!r} matches several records (e.g. {matches[0]}, {matches[1]}); "
                "give more characters of the id."
            )
        return prefix if prefix in matches else matches[0]

    def get(self, id_or_prefix: str) -> ReviewRecord:
        """The record whose id equals or uniquely starts with ``id_or_prefix``."""
        full = self.resolve_id(id_or_prefix)
        for record in self.records():
            if record.id == full:
                return record
        raise RecordNotFoundError(f"record {full} vanished while reading {self.location}.")  # pragma: no cover

    def set_label(self, id_or_prefix: str, label: str, note: str | None = None) -> ReviewRecord:
        """Label a record ``correct`` or ``incorrect`` (the latest label wins); returns it labelled."""
        check_label(label)
        full = self.resolve_id(id_or_prefix)
        labelled_at = utc_now_iso()
        self._append_label(full, label, note, labelled_at)
        return self.get(full)

    def labelled(self) -> list[ReviewRecord]:
        """Records that carry a human label."""
        return [r for r in self.records() if r.label is not None]

    @property
    def location(self) -> str:
        return str(getattr(self, "path", type(self).__name__))

    def __enter__(self) -> "ReviewSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"
