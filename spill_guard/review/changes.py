"""What changed in a review log since a reader last looked: :meth:`ReviewSink.changes`.

A reader that keeps a view of a log (a review queue, a dashboard) calls ``changes()`` once to
get everything, then ``changes(cursor)`` with the cursor of the previous answer to get only
what was written since: the records written or rewritten after the cursor, as
:class:`RecordSummary` objects (the fields a queue filters, sorts and lists on; no tokens, no
trace), and the label events appended after it. Each built-in sink answers in time
proportional to what is new, not to the size of the log. :meth:`LogChanges.apply` folds an
answer into a view; it is the one implementation of the rule below.

Keeping a view up to date (what :meth:`LogChanges.apply` does):

1. if ``reset`` is true, drop the view: ``records`` then holds the whole log;
2. put each summary of ``records`` in the view, replacing the one with its id (a rewritten
   record moves to the end, as in :meth:`ReviewSink.records`);
3. apply each event of ``labels`` in order to the summary of its record, except for records
   that are in this answer's ``records``: their summaries already carry their labels as they
   were stored when the log was read (an event from before a rewrite must not come back).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, create_model, field_validator

from spill_guard.review.record import LabelEvent, ReviewRecord, check_action, event_fields


@dataclass(frozen=True)
class RecordSummary:
    """The fields of a record that a queue filters, sorts and lists on (no tokens, no trace).

    ``label``, ``labelled_at`` and ``labelled_by`` are those of the latest label.
    """

    id: str
    created_at: str
    action: str
    flagged: bool
    score: float | None
    threshold: float | None
    rule_version: str | None
    model: str
    question: str
    answer: str
    original_answer: str
    label: str | None
    labelled_at: str | None
    labelled_by: str | None

    @classmethod
    def of(cls, record: ReviewRecord) -> RecordSummary:
        """The summary of ``record`` (with its label, if it has one)."""
        return cls(**{name: getattr(record, name) for name in SUMMARY_FIELDS})

    def with_event(self, event: LabelEvent) -> RecordSummary:
        """The summary with the label of ``event`` (a label event of this record) applied, as
        :meth:`ReviewRecord.with_event` applies it to the record."""
        fields = event_fields(self.id, event)
        return dataclasses.replace(self, **{name: fields[name] for name in LABEL_FIELDS})


SUMMARY_FIELDS = tuple(field.name for field in dataclasses.fields(RecordSummary))
LABEL_FIELDS = ("label", "labelled_at", "labelled_by")
# The fields a database sink takes from the record it stored (its JSON or its columns); the
# label fields come from the label columns.
STORED_FIELDS = tuple(name for name in SUMMARY_FIELDS if name not in LABEL_FIELDS)

# The stored fields, checked by ReviewRecord's own field definitions (types, defaults) and its
# action rule: a row whose summary fields would not pass ReviewRecord does not pass here either.
_StoredFields = create_model(  # type: ignore[call-overload]
    "StoredSummaryFields",
    __config__=ConfigDict(extra="ignore"),
    __validators__={"known_action": field_validator("action")(lambda cls, value: check_action(value))},
    **{name: (ReviewRecord.model_fields[name].annotation, ReviewRecord.model_fields[name]) for name in STORED_FIELDS},
)


def stored_summary(fields: dict[str, Any], label: LabelEvent | None) -> RecordSummary:
    """The summary of a stored record from its ``fields`` (the :data:`STORED_FIELDS` a database read
    without parsing the record) and its latest ``label``; raises pydantic's ``ValidationError`` if
    a field is missing or of the wrong type (the sink then reads the whole record instead)."""
    checked = _StoredFields.model_validate(fields)
    summary = RecordSummary(
        **{name: getattr(checked, name) for name in STORED_FIELDS}, label=None, labelled_at=None, labelled_by=None
    )
    return summary if label is None else summary.with_event(label)


@dataclass(frozen=True)
class LogChanges:
    """One answer of :meth:`ReviewSink.changes`.

    ``records``: the records written or rewritten after the cursor, in write order, each with its
    label as stored when the log was read (on PostgreSQL also a record written before the cursor
    whose transaction committed after it: it is given once it is visible). ``labels``: the label
    events appended after the cursor, in order (several per record are possible: this is the
    label history). ``cursor``: opaque; pass it to the next ``changes()`` call. ``reset``: true
    when the given cursor was ``None`` or is no longer valid (the log was replaced or truncated);
    ``records`` then holds the whole log and ``labels`` its whole label history, and the caller
    must drop what it had.
    """

    records: list[RecordSummary]
    labels: list[LabelEvent]
    cursor: object
    reset: bool

    def apply(self, view: dict[str, RecordSummary]) -> None:
        """Fold this answer into ``view`` (record id -> summary, in write order), in place.

        After folding every answer of a chain of ``changes()`` calls, ``view`` holds the summary of
        each record of the log as :meth:`ReviewSink.records` gives it at the last call, in the same
        order, with one exception: on PostgreSQL, a record whose transaction committed after that of
        a record written later (and already read) is given later, so it comes later in ``view``.
        """
        if self.reset:
            view.clear()
        written = set()
        for summary in self.records:
            view.pop(summary.id, None)  # a rewrite moves to the end
            view[summary.id] = summary
            written.add(summary.id)
        for event in self.labels:
            current = view.get(event.id)
            if current is not None and event.id not in written:
                view[event.id] = current.with_event(event)
