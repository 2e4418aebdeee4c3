"""``ReviewSink``: the small interface every review-log backend implements.

A sink stores :class:`ReviewRecord` objects and human labels. Writers (the guard, in any
number of threads or processes) only call :meth:`ReviewSink.write` or, for a batch,
:meth:`ReviewSink.write_many`; reviewers list, look up and label. Backends implement four
primitives (``_append``, ``_append_label``, ``records``, ``close``) and may implement more to be
faster (``_append_many`` to commit a batch at once, ``_matching`` for an indexed id lookup,
``changes`` to read only what is new); id-prefix lookup, redaction, label validation, the
per-record error handling of a batch and the label history live here once.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from spill_guard.review.changes import LogChanges, RecordSummary
from spill_guard.review.errors import (
    AmbiguousRecordIdError,
    InvalidLabelError,
    NotARecordError,
    RecordNotFoundError,
    ReviewLogBatchWriteError,
)
from spill_guard.review.record import LabelEvent, ReviewRecord, check_label, utc_now_iso
from spill_guard.review.skipped import SkipReport, first_problem

Redactor = Callable[[ReviewRecord], ReviewRecord]
Encoded = TypeVar("Encoded")


class ReviewSink(abc.ABC):
    """Append records, read them back with their latest label, label them.

    ``redact`` (optional) is applied to every record before it is stored, e.g.
    :func:`spill_guard.review.redact_patterns`, and to the record carrying a new label before
    the label's note and corrected answer are stored: the unredacted text never reaches disk.

    ``write`` and ``set_label`` raise :class:`~spill_guard.review.errors.ReviewLogWriteError`
    (a ``ReviewLogError`` and an ``OSError``) when the log cannot store what was given.
    """

    def __init__(self, *, redact: Redactor | None = None) -> None:
        self.redact = redact

    # -- backend primitives -------------------------------------------------------------
    @abc.abstractmethod
    def _append(self, record: ReviewRecord) -> None:
        """Store one (already redacted) record durably; a record with an existing id replaces it."""

    def _append_many(self, records: list[ReviewRecord]) -> list[Exception | None]:
        """Store (already redacted) records in order, as ``_append`` would one by one; per record
        ``None`` (stored) or the exception that kept it out.

        The default calls ``_append`` per record; a backend that can commit several records at
        once (one fsync, one transaction) overrides it, usually with :meth:`_commit_encoded`.
        """
        failures: list[Exception | None] = []
        for record in records:
            try:
                self._append(record)
                failures.append(None)
            except Exception as exc:  # noqa: BLE001 - handed back per record, raised by write/write_many
                failures.append(exc)
        return failures

    @staticmethod
    def _commit_encoded(
        records: list[ReviewRecord], encode: Callable[[ReviewRecord], Encoded], commit: Callable[[list[Encoded]], None]
    ) -> list[Exception | None]:
        """The batch write of a backend: ``encode`` each record (a record that cannot be encoded
        fails alone), then ``commit`` the encoded ones with one durable commit (if it fails,
        every record it carried fails with its error and none of them is stored).

        A backend's ``_append(record)`` is ``commit([encode(record)])``: one write path for both.
        """
        failures: list[Exception | None] = [None] * len(records)
        encoded: list[Encoded] = []
        carried: list[int] = []
        for i, record in enumerate(records):
            try:
                encoded.append(encode(record))
                carried.append(i)
            except Exception as exc:  # noqa: BLE001 - this record's failure only
                failures[i] = exc
        if encoded:
            try:
                commit(encoded)
            except Exception as exc:  # noqa: BLE001 - the commit's failure is every carried record's
                for i in carried:
                    failures[i] = exc
        return failures

    @abc.abstractmethod
    def _append_label(self, event: LabelEvent) -> None:
        """Store a label event (already redacted, ``labelled_at`` set) for an existing full id: it
        becomes the record's latest label and is appended to its label history."""

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
        """Store ``record`` (after redaction) durably and return its id."""
        [outcome] = self._store([record], "write()")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def write_many(self, records: Sequence[ReviewRecord]) -> list[str]:
        """Store ``records`` (each after redaction) with one durable commit and return their ids.

        Stores exactly what calling :meth:`write` once per record, in order, would store (a
        repeated id replaces the earlier record), with one ``fsync`` (JSONL) or one transaction
        (SQLite, PostgreSQL) instead of one per record. A record that cannot be stored on its
        own (a value JSON cannot hold, a ``redact`` hook that fails on it) fails alone; a
        commit that fails (full disk, read-only file, lost server) fails every record it
        carried, and none of those is stored. Unless every record was stored, a
        :class:`~spill_guard.review.errors.ReviewLogBatchWriteError` is raised after the
        others were: its ``.results`` hold each record's id or error.
        """
        outcomes = self._store(list(records), "write_many()")
        if any(isinstance(o, BaseException) for o in outcomes):
            error = ReviewLogBatchWriteError(outcomes)
            raise error from next(o for o in outcomes if isinstance(o, BaseException))
        return outcomes

    def _store(self, records: list[ReviewRecord], caller: str) -> list[Any]:
        """Redact and store ``records`` with one ``_append_many``; per record its id or its exception."""
        for record in records:  # a wrong type is the caller's bug: refused before anything is stored
            if not isinstance(record, ReviewRecord):
                raise NotARecordError(
                    f"{caller} takes ReviewRecord objects, got {type(record).__name__}; "
                    "build one with ReviewRecord(...) or ReviewRecord.from_verdict(verdict)."
                )
        outcomes: list[Any] = [None] * len(records)
        ready: list[ReviewRecord] = []
        where: list[int] = []
        for i, record in enumerate(records):
            try:
                ready.append(self._redacted(record) if self.redact is not None else record)
                where.append(i)
            except Exception as exc:  # noqa: BLE001 - a hook failing on one record fails that record
                outcomes[i] = exc
        if ready:
            for i, record, failure in zip(where, ready, self._append_many(ready)):
                outcomes[i] = record.id if failure is None else failure
        return outcomes

    def _redacted(self, record: ReviewRecord) -> ReviewRecord:
        redacted = self.redact(record)  # type: ignore[misc]
        if not isinstance(redacted, ReviewRecord):
            raise NotARecordError(
                f"the redact hook returned {type(redacted).__name__}, not a ReviewRecord; "
                "it must return the (rewritten) record, e.g. record.model_copy(update=...)."
            )
        return redacted

    def get_many(self, ids: Sequence[str]) -> list[ReviewRecord]:
        """The records with these exact ids, in the order given (ids not in the log are left out).

        The default reads the log once (:meth:`records`); database sinks look the ids up in their index.
        """
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        found = self._with_ids(wanted)
        return [found[i] for i in wanted if i in found]

    def _with_ids(self, ids: list[str]) -> dict[str, ReviewRecord]:
        """id -> record for the ``ids`` present (the backend primitive behind :meth:`get_many`)."""
        chosen = set(ids)
        return {r.id: r for r in self.records() if r.id in chosen}

    def get(self, id_or_prefix: str) -> ReviewRecord:
        """The record whose id equals or uniquely starts with ``id_or_prefix``."""
        prefix = (id_or_prefix or "").strip()
        if not prefix:
            raise RecordNotFoundError(
                "an empty record id was given; pass an id or a prefix of one (see `spill-guard review list`)."
            )
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

    def set_label(
        self,
        id_or_prefix: str,
        label: str,
        note: str | None = None,
        *,
        reviewer: str | None = None,
        corrected_answer: str | None = None,
    ) -> ReviewRecord:
        """Label a record ``correct`` or ``incorrect`` (the latest label wins); returns it labelled.

        ``note`` says why, ``reviewer`` names who labels (stored as given), ``corrected_answer``
        is the answer the reviewer says is right. Every label is also kept in the record's label
        history (:meth:`label_events`).
        """
        checked = check_label(label)
        for name, value, what in (
            ("note", note, "the reason"),
            ("reviewer", reviewer, "the reviewer's name"),
            ("corrected_answer", corrected_answer, "the corrected answer"),
        ):
            if value is not None and not isinstance(value, str):
                raise InvalidLabelError(
                    f"{name} must be text or None, got {type(value).__name__} {value!r}; pass {what} as a string."
                )
        record = self.get(id_or_prefix)
        labelled_at = utc_now_iso()
        if self.redact is not None and (note is not None or corrected_answer is not None):
            # The hook works on records, so the note and the corrected answer go through it inside
            # the labelled record: the same patterns that clean a record's fields clean them.
            cleaned = self._redacted(
                record.with_label(label, note, labelled_at, reviewer=reviewer, corrected_answer=corrected_answer)
            )
            note, corrected_answer = cleaned.label_note, cleaned.corrected_answer
        self._append_label(
            LabelEvent(
                id=record.id,
                label=checked,
                note=note,
                labelled_at=labelled_at,
                reviewer=reviewer,
                corrected_answer=corrected_answer,
            )
        )
        return self.get(record.id)

    def changes(self, cursor: object | None = None) -> LogChanges:
        """What was written since ``cursor`` (``None``: everything), and the cursor for the next call.

        See :class:`~spill_guard.review.changes.LogChanges`. The built-in sinks read only what is
        new. This default, for a sink of your own, reads :meth:`records` whole every time and
        answers with ``reset=True`` and no label events (``labels == []``: the label history of
        such a sink is unknown; each summary still carries its latest label).
        """
        return LogChanges(records=[RecordSummary.of(r) for r in self.records()], labels=[], cursor=None, reset=True)

    def label_events(self, record_id: str | None = None) -> list[LabelEvent]:
        """Every label event of the log in the order they were given (or those of the record with
        the full id ``record_id``): the label history, which :meth:`records` folds to the latest."""
        events = self.changes(None).labels
        return events if record_id is None else [e for e in events if e.id == record_id]

    def labelled(self) -> list[ReviewRecord]:
        """Records that carry a human label."""
        return [r for r in self.records() if r.label is not None]

    @staticmethod
    def _stored_label(record_id: str, columns: tuple[Any, ...], where: str, report: SkipReport) -> LabelEvent | None:
        """The latest label of a database row from its label columns (``label``, ``label_note``,
        ``labelled_at``, ``labelled_by``, ``corrected_answer``; text already decoded): ``None`` when
        unlabelled, or when the columns are malformed (reported: the record is kept unlabelled)."""
        if columns[0] is None:
            return None
        return ReviewSink._event_of(record_id, columns, where, report, "ignored malformed label columns")

    @staticmethod
    def _event_of(
        record_id: Any, columns: tuple[Any, ...], where: str, report: SkipReport, problem: str
    ) -> LabelEvent | None:
        """A label event from a database row's ``(label, note, labelled_at, reviewer, corrected_answer)``
        (text already decoded); ``None``, reported as ``problem: <why>``, when they are malformed."""
        label, note, labelled_at, reviewer, corrected_answer = columns
        try:
            return LabelEvent(
                id=record_id,
                label=label,
                note=note,
                labelled_at=labelled_at,
                reviewer=reviewer,
                corrected_answer=corrected_answer,
            )
        except ValidationError as exc:
            report.skip(where, f"{problem}: {first_problem(exc)}")
            return None

    @property
    def location(self) -> str:
        return str(getattr(self, "path", type(self).__name__))

    def __enter__(self) -> ReviewSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"
