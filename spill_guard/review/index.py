"""An in-memory index of a review log for queues: filter, sort, page and count without re-reading the log.

:class:`RecordIndex` keeps one :class:`~spill_guard.review.changes.RecordSummary` per record (the
fields a queue shows and filters on, no tokens or trace) and every label event, and follows the
log with :meth:`ReviewSink.changes`: a refresh costs what was written since the last one, so a
queue over 100,000 records answers in milliseconds and still sees labels given elsewhere (the CLI,
another reviewer, another studio). Full records (tokens, trace) are read one at a time with
``sink.get(id)``.

Filters are a :class:`RecordFilter`; risk is the record's ``score`` (higher = riskier), records
without a score sort last either way.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spill_guard.review.base import ReviewSink
from spill_guard.review.changes import LogChanges, RecordSummary
from spill_guard.review.record import ACTIONS, LabelEvent

LabelState = Literal["any", "unlabelled", "labelled", "correct", "incorrect"]
Sort = Literal["-risk", "risk", "-time", "time"]
SORTS: tuple[str, ...] = ("-risk", "risk", "-time", "time")
LABEL_STATES: tuple[str, ...] = ("any", "unlabelled", "labelled", "correct", "incorrect")


def _instant(value: str) -> str:
    """An ISO date or date-time, normalised to what ``created_at`` compares with (UTC, sortable text)."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a date or time; write it as 2026-12-06 or 2026-12-06T14:30") from None
    if parsed.tzinfo is None:
        return parsed.isoformat(timespec="microseconds") + "+00:00"
    return parsed.astimezone(UTC).isoformat(timespec="microseconds")


class RecordFilter(BaseModel):
    """Which records a queue shows, and in which order. Every field is optional; empty text means "any"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str | None = Field(default=None, description="passed | flagged | abstained | raised")
    label: LabelState = "any"
    model: str | None = None
    rule_version: str | None = None
    since: str | None = Field(default=None, description="created at or after (ISO date / date-time, UTC if no zone)")
    until: str | None = Field(default=None, description="created before (ISO date / date-time)")
    min_risk: float | None = None
    max_risk: float | None = None
    q: str | None = Field(default=None, description="text in the question, the answer shown or the model's answer")
    sort: Sort = "-risk"

    @field_validator("action", "model", "rule_version", "q", "since", "until", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("min_risk", "max_risk", mode="before")
    @classmethod
    def _blank_number(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("min_risk", "max_risk")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"a risk bound must be a finite number, got {value!r}")
        return value

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str | None) -> str | None:
        if value is not None and value not in ACTIONS:
            raise ValueError(f"action {value!r} is not one of {list(ACTIONS)}")
        return value

    @field_validator("since", "until")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        return None if value is None else _instant(value)

    @model_validator(mode="after")
    def _ordered(self) -> RecordFilter:
        if self.min_risk is not None and self.max_risk is not None and self.min_risk > self.max_risk:
            raise ValueError(f"min_risk {self.min_risk} is above max_risk {self.max_risk}; swap them")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"since {self.since} is not before until {self.until}")
        return self

    def predicate(self) -> Callable[[RecordSummary, str], bool] | None:
        """One function testing every condition of this filter on a summary and its lower-cased text;
        None when the filter lets everything through (compiled once per query: a queue tests 100,000 records)."""
        tests: list[Callable[[RecordSummary, str], bool]] = []
        if self.action is not None:
            action = self.action
            tests.append(lambda s, _: s.action == action)
        if self.label == "unlabelled":
            tests.append(lambda s, _: s.label is None)
        elif self.label == "labelled":
            tests.append(lambda s, _: s.label is not None)
        elif self.label != "any":
            label = self.label
            tests.append(lambda s, _: s.label == label)
        if self.model is not None:
            model = self.model
            tests.append(lambda s, _: s.model == model)
        if self.rule_version is not None:
            version = self.rule_version
            tests.append(lambda s, _: s.rule_version == version)
        if self.since is not None:
            since = self.since
            tests.append(lambda s, _: s.created_at >= since)
        if self.until is not None:
            until = self.until
            tests.append(lambda s, _: s.created_at < until)
        if self.min_risk is not None or self.max_risk is not None:
            low = -math.inf if self.min_risk is None else self.min_risk
            high = math.inf if self.max_risk is None else self.max_risk
            tests.append(lambda s, _: s.score is not None and low <= s.score <= high)
        if self.q is not None:
            needle = self.q.casefold()
            tests.append(lambda _, text: needle in text)
        if not tests:
            return None
        if len(tests) == 1:
            return tests[0]
        return lambda s, text: all(test(s, text) for test in tests)


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of a filtered queue: ``items`` from ``offset``, ``total`` matching, ``labelled`` of them."""

    items: list[RecordSummary]
    offset: int
    limit: int
    total: int
    labelled: int


@dataclasses.dataclass(frozen=True)
class Disagreement:
    """A record two or more reviewers labelled differently: each reviewer's latest label."""

    record: RecordSummary
    labels: dict[str, str]


def _searchable(s: RecordSummary) -> str:
    return "\n".join((s.question, s.answer, s.original_answer)).casefold()


def _risk_key(descending: bool) -> Callable[[RecordSummary], tuple[int, float]]:
    sign = -1.0 if descending else 1.0

    def key(s: RecordSummary) -> tuple[int, float]:
        return (1, 0.0) if s.score is None else (0, sign * s.score)

    return key


class RecordIndex:
    """Summaries of every record of ``sink`` and its label history, kept current by :meth:`refresh`.

    Thread-safe: requests of a web server may query while another refreshes. Sort orders are
    lists of ids (a label changes no order, so it keeps them); the records a filter matches are
    kept per filter until the log changes.
    """

    def __init__(self, sink: ReviewSink) -> None:
        self.sink = sink
        self._lock = threading.RLock()
        self._cursor: object | None = None
        self._by_id: dict[str, RecordSummary] = {}
        self._text: dict[str, str] = {}
        self._history: dict[str, list[LabelEvent]] = {}
        self._orders: dict[str, list[str]] = {}
        self._matches: dict[RecordFilter, tuple[list[RecordSummary], dict[str, int], int]] = {}
        self._facets: dict[str, list[str]] | None = None
        self.version = 0  # bumped whenever anything changed

    # -- following the log ---------------------------------------------------------------
    def refresh(self) -> bool:
        """Read what the log gained since the last refresh; whether anything changed."""
        with self._lock:
            changes = self.sink.changes(self._cursor)
            self._apply(changes)
            return bool(changes.reset or changes.records or changes.labels)

    def _apply(self, changes: LogChanges) -> None:
        if changes.reset:
            self._text, self._history = {}, {}
        changes.apply(self._by_id)  # the one fold of a change feed into a view
        for summary in changes.records:
            self._text[summary.id] = _searchable(summary)
        for event in changes.labels:
            self._remember(event)
        self._cursor = changes.cursor
        if changes.reset or changes.records:
            self._orders = {}
        if changes.reset or changes.records or changes.labels:
            self._changed()

    def _changed(self) -> None:
        self._matches = {}
        self._facets = None
        self.version += 1

    def _remember(self, event: LabelEvent) -> None:
        history = self._history.setdefault(event.id, [])
        key = (event.labelled_at, event.reviewer, event.label)
        if not any((e.labelled_at, e.reviewer, e.label) == key for e in history):  # read again after our write
            history.append(event)

    def note_label(self, event: LabelEvent) -> None:
        """Show a label this process just wrote at once (the next refresh reads it again, harmlessly)."""
        with self._lock:
            self._remember(event)
            current = self._by_id.get(event.id)
            if current is not None:
                self._by_id[event.id] = current.with_event(event)
            self._changed()

    # -- reading -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._by_id)

    def summary(self, record_id: str) -> RecordSummary | None:
        return self._by_id.get(record_id)

    def history(self, record_id: str) -> list[LabelEvent]:
        with self._lock:
            return list(self._history.get(record_id, ()))

    def _ordered(self, sort: str) -> list[str]:
        order = self._orders.get(sort)
        if order is None:
            rows = list(self._by_id.values())
            if sort in ("-risk", "risk"):
                rows.sort(key=_risk_key(sort == "-risk"))
            else:
                rows.sort(key=lambda s: s.created_at, reverse=sort == "-time")
            order = self._orders[sort] = [s.id for s in rows]
        return order

    def _matched(self, flt: RecordFilter) -> tuple[list[RecordSummary], dict[str, int], int]:
        """(matching summaries in order, id -> position, how many are labelled), cached until the log changes."""
        with self._lock:
            found = self._matches.get(flt)
            if found is None:
                by_id, text = self._by_id, self._text
                rows = [by_id[rid] for rid in self._ordered(flt.sort)]
                test = flt.predicate()
                if test is not None:
                    rows = [s for s in rows if test(s, text[s.id])]
                labelled = sum(1 for s in rows if s.label is not None)
                if len(self._matches) >= 32:
                    self._matches.clear()
                found = self._matches[flt] = (rows, {s.id: i for i, s in enumerate(rows)}, labelled)
            return found

    def matching(self, flt: RecordFilter) -> list[RecordSummary]:
        """Every record ``flt`` lets through, in its order."""
        return self._matched(flt)[0]

    def page(self, flt: RecordFilter, offset: int = 0, limit: int = 50) -> Page:
        rows, _, labelled = self._matched(flt)
        offset = max(0, min(offset, max(0, len(rows) - 1)))
        return Page(rows[offset : offset + limit], offset, limit, len(rows), labelled)

    def neighbours(self, record_id: str, flt: RecordFilter) -> tuple[str | None, str | None]:
        """The records before and after ``record_id`` in ``flt``'s order (None at either end or if absent)."""
        rows, position, _ = self._matched(flt)
        i = position.get(record_id)
        if i is None:
            return None, None
        return (rows[i - 1].id if i > 0 else None), (rows[i + 1].id if i + 1 < len(rows) else None)

    def facets(self) -> dict[str, list[str]]:
        """The models and rule versions present, for the filter's choices (kept until the log changes)."""
        with self._lock:
            if self._facets is None:
                models = sorted({s.model for s in self._by_id.values() if s.model})
                versions = sorted({s.rule_version for s in self._by_id.values() if s.rule_version})
                self._facets = {"model": models, "rule_version": versions}
            return self._facets

    def disagreements(self) -> list[Disagreement]:
        """Records whose reviewers' latest labels differ (label events without a reviewer are left out)."""
        with self._lock:
            found = []
            for record_id, events in self._history.items():
                latest: dict[str, str] = {}
                for event in events:
                    if event.reviewer:
                        latest[event.reviewer] = event.label
                if len(set(latest.values())) > 1 and record_id in self._by_id:
                    found.append(Disagreement(self._by_id[record_id], dict(sorted(latest.items()))))
        return found

    def summaries(self) -> list[RecordSummary]:
        with self._lock:
            return list(self._by_id.values())
