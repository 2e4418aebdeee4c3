"""``ReviewRecord``: one guarded answer as it is stored in a review log (schema in docs/review-log.md).

A record is a flat, strict-JSON snapshot of a guard ``Verdict``: what was asked, what the
user saw, the score against the threshold, the per-token risk values for a heatmap, and
(optionally) the full ``ScoredAnswer.to_record()`` dict with its trace, so calibration can
later re-score the same answer with any scorer, pooling or span without the model.

Non-finite numbers (NaN, ±inf) are turned into ``None`` on the way *in*, not only when
serialising, so a record read back from a log equals the record that was written.
"""

from __future__ import annotations

import math
import numbers
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from spill_guard.review.errors import InvalidLabelError
from spill_guard.review.jsontext import dumps_line, loads_strict

RECORD_SCHEMA_VERSION = 1
LABELS = ("correct", "incorrect")
ACTIONS = ("passed", "flagged", "abstained", "raised")

Label = Literal["correct", "incorrect"]
_PARSED_STRICT_JSON = "parsed_strict_json"  # validation-context flag, see ReviewRecord.from_parsed


def new_record_id() -> str:
    return uuid.uuid4().hex


def utc_now_iso() -> str:
    """ISO-8601 UTC with microseconds: sorts lexicographically in time order."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def strict_json_value(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (recursively).

    JSON has no NaN/Infinity; Python's ``json`` would happily write them and most other
    readers (jq, JavaScript, SQLite's json1) would then reject the whole line.
    """
    kind = type(value)
    # Exact-type fast paths first: a trace holds thousands of plain floats and ints.
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is list or kind is tuple:
        return [strict_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k if type(k) is str else str(k): strict_json_value(v) for k, v in value.items()}
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):  # numpy ints too: json cannot write np.int64
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [strict_json_value(v) for v in value]
    if hasattr(value, "model_dump"):  # a pydantic object, e.g. an AnswerSpan or Attempt
        return strict_json_value(value.model_dump(mode="json"))
    # Anything else JSON cannot hold (a datetime, a set, a client object in run metadata) is
    # kept as its repr: a log line must never fail to serialise halfway through a request.
    return repr(value)


class LabelEvent(BaseModel):
    """A label as a log stores it (a JSONL ``label`` line, a row of the SQLite ``labels`` table or of
    PostgreSQL's ``T_labels``, the label columns of a record row), checked on reading.

    ``reviewer`` is who gave the label and ``corrected_answer`` the answer they say is right (both
    optional). Strict types: a hand-edited ``"id": [1]`` or ``"note": 5`` is a malformed line, not a
    crash later.
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    id: str
    label: Label
    note: str | None = None
    labelled_at: str | None = None
    reviewer: str | None = None
    corrected_answer: str | None = None


def check_label(label: Any) -> Label:
    if label not in LABELS:
        raise InvalidLabelError(f"label {label!r} is not one of {list(LABELS)}; use 'correct' or 'incorrect'.")
    return label


def label_fields(
    label: str, note: str | None, labelled_at: str | None, reviewer: str | None, corrected_answer: str | None
) -> dict[str, Any]:
    """The five label fields of a record that carries this label (``labelled_at`` defaults to now)."""
    return {
        "label": check_label(label),
        "label_note": note,
        "labelled_at": labelled_at or utc_now_iso(),
        "labelled_by": reviewer,
        "corrected_answer": corrected_answer,
    }


def event_fields(record_id: str, event: LabelEvent) -> dict[str, Any]:
    """:func:`label_fields` of ``event``, which must be a label event of record ``record_id``."""
    if event.id != record_id:
        raise InvalidLabelError(
            f"a label event of record {event.id!r} cannot be applied to record {record_id!r}; "
            "apply each event to the record whose id it carries."
        )
    return label_fields(event.label, event.note, event.labelled_at, event.reviewer, event.corrected_answer)


def check_action(value: str) -> str:
    """``value`` if it is one of :data:`ACTIONS` (the rule of a record's ``action`` field)."""
    if value not in ACTIONS:
        raise ValueError(f"action {value!r} is not one of {list(ACTIONS)}")
    return value


class ReviewRecord(BaseModel):
    """One answer in a review log. Higher ``score`` = riskier; ``label`` is the human's verdict."""

    model_config = ConfigDict(ser_json_inf_nan="null", protected_namespaces=(), extra="ignore")

    schema_version: int = RECORD_SCHEMA_VERSION
    id: str = Field(default_factory=new_record_id, description="uuid4 hex; prefixes are accepted by lookups")
    created_at: str = Field(default_factory=utc_now_iso, description="ISO-8601 UTC")
    question: str
    context: str | None = None
    answer: str = Field(description="what the user saw (the abstention reply when abstained)")
    original_answer: str = Field(description="the model's answer that was scored")
    action: str = Field(description="passed | flagged | abstained | raised")
    flagged: bool
    score: float | None = Field(description="risk score of original_answer; None if undefined")
    threshold: float | None = None
    rule_version: str | None = Field(
        default=None, description='the rule that judged it: a calibration version ("cal-...") or "threshold:<value>"'
    )
    spec: str = Field(description='score spec, e.g. "spilled_energy:mean"')
    locator: str = "full"
    span: dict[str, Any] | None = Field(default=None, description="start, end, text, token_start, token_end")
    tokens: list[str] = Field(default_factory=list, description="text of each answer token")
    token_scores: list[float | None] = Field(default_factory=list, description="per-token Δ, aligned with tokens")
    attempts: list[dict[str, Any]] = Field(default_factory=list)
    second_opinion: dict[str, Any] | None = Field(
        default=None, description="agreement of sampled answers with the first, when one pass was unsure"
    )
    model: str = ""
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    label: Label | None = None
    label_note: str | None = None
    labelled_at: str | None = None
    labelled_by: str | None = Field(default=None, description="the reviewer who gave the latest label")
    corrected_answer: str | None = Field(default=None, description="the answer the latest label says is right")
    scored: dict[str, Any] | None = Field(default=None, description="ScoredAnswer.to_record() incl. trace")

    @field_validator(
        "score", "threshold", "token_scores", "span", "attempts", "second_opinion", "metadata", "scored", mode="before"
    )
    @classmethod
    def _strict_json(cls, value: Any, info: ValidationInfo) -> Any:
        if info.context and info.context.get(_PARSED_STRICT_JSON):
            return value  # came from from_json, which already mapped NaN/Infinity to None
        return strict_json_value(value)

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str) -> str:
        return check_action(value)

    @model_validator(mode="after")
    def _aligned_token_scores(self) -> ReviewRecord:
        if len(self.token_scores) != len(self.tokens):
            raise ValueError(
                f"{len(self.tokens)} tokens but {len(self.token_scores)} token_scores; they must be aligned "
                "one score per token (use None where a score is undefined)"
            )
        return self

    def to_json(self) -> str:
        """One line of strict JSON (no NaN/Infinity, no raw newlines; lone surrogates as escapes).

        Dumped in Python mode: pydantic's JSON mode cannot hold a lone surrogate, and every
        field is already a JSON type (the validators made it so).
        """
        return dumps_line(self.model_dump())

    @classmethod
    def from_json(cls, text: str | bytes) -> ReviewRecord:
        """Parse one line; a stray ``NaN``/``Infinity`` token or ``1e400`` (non-strict writers) reads as ``None``."""
        return cls.from_parsed(loads_strict(text))

    @classmethod
    def from_parsed(cls, obj: dict[str, Any]) -> ReviewRecord:
        """Validate a dict that came out of :func:`json.loads` with NaN/Infinity mapped to None.

        Skips the recursive non-finite scan (a trace holds thousands of numbers); the
        types are still validated.
        """
        return cls.model_validate(obj, context={_PARSED_STRICT_JSON: True})

    def with_label(
        self,
        label: str,
        note: str | None = None,
        labelled_at: str | None = None,
        *,
        reviewer: str | None = None,
        corrected_answer: str | None = None,
    ) -> ReviewRecord:
        """A copy carrying a human label (``correct`` / ``incorrect``): all five label fields are set
        (``labelled_at`` defaults to now), so nothing of an earlier label survives."""
        return self.model_copy(update=label_fields(label, note, labelled_at, reviewer, corrected_answer))

    def with_event(self, event: LabelEvent) -> ReviewRecord:
        """A copy with the label of ``event`` (a label event of this record) applied."""
        return self.model_copy(update=event_fields(self.id, event))

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @classmethod
    def from_verdict(
        cls,
        verdict: Any,
        *,
        model: str | None = None,
        tags: tuple[str, ...] | list[str] = (),
        metadata: dict[str, Any] | None = None,
        include_scored: bool = True,
    ) -> ReviewRecord:
        """Build a record from a guard ``Verdict`` (read by attribute, so no import of the guard).

        ``include_scored=False`` leaves out the ``ScoredAnswer`` and its trace (records shrink
        from kilobytes to a few hundred bytes, but calibration can no longer re-score them).
        """
        scored = getattr(verdict, "scored", None)
        action = verdict.action
        span: Any = getattr(verdict, "span", None)
        attempts = [a.model_dump(mode="json") if hasattr(a, "model_dump") else dict(a) for a in verdict.attempts]
        opinion: Any = getattr(verdict, "second_opinion", None)
        scored_record = None
        if include_scored and scored is not None:
            scored_record = scored.to_record() if hasattr(scored, "to_record") else dict(scored)
        return cls(
            question=verdict.question,
            context=verdict.context,
            answer=verdict.answer,
            original_answer=verdict.original_answer,
            action=getattr(action, "value", action),
            flagged=verdict.flagged,
            score=verdict.score,
            threshold=verdict.threshold,
            rule_version=getattr(verdict, "rule_version", None),
            spec=str(verdict.spec),
            locator=str(verdict.locator),
            span=span.model_dump(mode="json") if hasattr(span, "model_dump") else span,
            tokens=list(verdict.tokens),
            token_scores=list(verdict.token_scores),
            attempts=attempts,
            second_opinion=opinion.model_dump(mode="json") if hasattr(opinion, "model_dump") else opinion,
            model=model if model is not None else str(getattr(scored, "model", "") or ""),
            tags=list(tags),
            metadata=dict(metadata or {}),
            scored=scored_record,
        )
