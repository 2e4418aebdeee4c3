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

from spill_guard.review.errors import AmbiguousRecordIdError, InvalidLabelError, NotARecordError, RecordNotFoundError
from spill_guard.review.record import ReviewRecord, check_label, utc_now_iso

Redactor = Callable[[ReviewRecord], ReviewRecord]


class ReviewSink(abc.ABC):
    """Append records, read them back with their latest label, label them.

    ``redact`` (optional) is applied to every record before it is stored, e.g.
    :func:`spill_guard.review.redact_patterns`, and to the record carrying a new label note
    before the note is stored: the unredacted text never reaches disk.

    ``write`` and ``set_label`` raise :class:`~spill_guard.review.errors.ReviewLogWriteError`
    (a ``ReviewLogError`` and an ``OSError``) when the log cannot store what was given.
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

    def _matching(self, prefix: str) -> list[ReviewRecord]:
        """Records whose id equals ``prefix`` or starts with it: the exact match first, at most two.

        Backends may override this with an indexed query; the default scans :meth:`records`.
        """
        exact, starts = [], []
        for record in self.records():
            if record.id == prefix:
                exact.append(record)
            elif record.id.startswith(prefix):
                starts.append(record)
        return (exact + starts)[:2]

    # -- public API ---------------------------------------------------------------------
    def write(self, record: ReviewRecord) -> str:
        """Store ``record`` (after redaction) and return its id."""
        if not isinstance(record, ReviewRecord):
            raise NotARecordError(f"write() takes a ReviewRecord, got {type(record).__name__}; "
                            "build one with ReviewRecord(...) or ReviewRecord.from_verdict(verdict).")
        if self.redact is not None:
            record = self._redacted(record)
        self._append(record)
        return record.id

    def _redacted(self, record: ReviewRecord) -> ReviewRecord:
        redacted = self.redact(record)  # type: ignore[misc]
        if not isinstance(redacted, ReviewRecord):
            raise NotARecordError(f"the redact hook returned {type(redacted).__name__}, not a ReviewRecord; "
                                  "it must return the (rewritten) record, e.g. record.model_copy(update=...).")
        return redacted

    def get(self, id_or_prefix: str) -> ReviewRecord:
        """The record whose id equals or uniquely starts with ``id_or_prefix``."""
        prefix = (id_or_prefix or "").strip()
        if not prefix:
            raise RecordNotFoundError("an empty record id was given; pass an id or a prefix of one "
                                      "(see `spill-guard review list`).")
        matches = self._matching(prefix)
        if not matches:
            raise RecordNotFoundError(
                f"no record with id or id prefix {id_or_prefix!r} in {self.location}; "
                "list the ids with `spill-guard review list --log ...`."
            )
        if matches[0].id != prefix and len(matches) > 1:
            raise AmbiguousRecordIdError(
                f"id prefix {id_or_prefix!r} matches several records (e.g. {matches[0].id}, {matches[1].id}); "
                "give more characters of the id."
            )
        return matches[0]

    def set_label(self, id_or_prefix: str, label: str, note: str | None = None) -> ReviewRecord:
        """Label a record ``correct`` or ``incorrect`` (the latest label wins); returns it labelled."""
        check_label(label)
        if note is not None and not isinstance(note, str):
            raise InvalidLabelError(f"note must be text or None, got {type(note).__name__} {note!r}; "
                                    "pass the reason as a string.")
        record = self.get(id_or_prefix)
        labelled_at = utc_now_iso()
        if note is not None and self.redact is not None:
            # The hook works on records, so the note goes through it inside the labelled record:
            # the same patterns that clean a record's fields clean the note.
            note = self._redacted(record.with_label(label, note, labelled_at)).label_note
        self._append_label(record.id, label, note, labelled_at)
        return self.get(record.id)

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
