"""The task file format: one JSON object per line (JSONL), validated as :class:`TaskItem`.

A line looks like::

    {"id": "q1", "question": "What is 37 + 48?", "answers": ["85"]}

``question`` and ``answers`` are required; ``id`` defaults to the 1-based line number;
``context`` is an optional passage for RAG-style prompts; ``meta`` is a free-form dict for
tags such as a difficulty level. Unknown keys are rejected, because a misspelt key
(``"answer"`` for ``"answers"``) would otherwise be dropped silently and the item judged
against nothing.

Every error names the file, the line and what is wrong, and says how to fix it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from spill_guard.errors import InvalidInputError, SpillGuardError


class TaskFormatError(InvalidInputError):
    """A task file (or one of its lines) does not follow the JSONL task format."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line


class TaskNotFoundError(SpillGuardError, FileNotFoundError):
    """A task name is not built in and is not an existing ``.jsonl`` file."""


class TaskItem(BaseModel):
    """One question with the answers accepted as correct.

    ``id`` is required here; :func:`load_jsonl` fills it with the line number when a line
    has none, so files may omit it. Integer ids in a file (``"id": 7``) are read as ``"7"``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    question: str
    answers: list[str]
    context: str | None = None
    meta: dict[str, Any] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_from_int(cls, value: Any) -> Any:
        # Hand-written files often number items; an int id is unambiguous, so accept it.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("id", "question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(f"must be a non-empty string, got {value!r}")
        return value

    @field_validator("answers", mode="before")
    @classmethod
    def _answers_list(cls, value: Any) -> Any:
        # A bare string is the commonest mistake; say exactly what to write instead.
        if isinstance(value, str):
            raise ValueError(f'must be a list of strings, got the string {value!r}; write ["{value}"]')
        return value

    @field_validator("answers")
    @classmethod
    def _answers_non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f'must list at least one accepted answer, got {value!r}; e.g. ["Paris"]')
        blank = [i for i, a in enumerate(value) if not a.strip()]
        if blank:
            raise ValueError(f"answer(s) at position {blank} are empty: {value!r}; remove them")
        return value


def _describe(error: ValidationError) -> str:
    """Turn pydantic's error list into one readable sentence per problem."""
    parts = []
    for err in error.errors():
        field = ".".join(str(p) for p in err["loc"]) or "item"
        if err["type"] == "extra_forbidden":
            hint = " (did you mean 'answers'?)" if field == "answer" else ""
            parts.append(f"unknown key {field!r}{hint}; allowed keys are id, question, answers, context, meta")
        elif err["type"] == "missing":
            parts.append(f"missing required key {field!r}")
        elif err["type"] == "value_error":
            # Our own validators already echo the value and suggest the fix.
            parts.append(f"{field!r} {err['msg'].removeprefix('Value error, ')}")
        elif err["type"] == "string_type":
            parts.append(f"{field!r} must be a string, got {_shorten(repr(err.get('input')))}; put it in quotes")
        else:
            parts.append(
                f"{field!r}: {err['msg'][:1].lower()}{err['msg'][1:]} (got {_shorten(repr(err.get('input')))})"
            )
    return "; ".join(parts)


def parse_jsonl_lines(lines: Iterable[bytes | str], source: str) -> list[TaskItem]:
    """Parse task lines; ``source`` names the file in error messages.

    Blank lines are skipped but still counted, so line numbers match an editor's.
    """
    items: list[TaskItem] = []
    first_line_of: dict[str, int] = {}
    for lineno, raw in enumerate(lines, start=1):
        where = f"{source}:{lineno}"
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TaskFormatError(
                    f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8.",
                    path=source,
                    line=lineno,
                ) from None
        # A BOM on the first line is an editor artefact, not content.
        text = raw.lstrip("\ufeff").strip() if lineno == 1 else raw.strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError, or a ValueError for an integer past Python's digit limit, or
            # RecursionError for absurdly deep nesting: all mean "not a task line".
            why = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)[:80]
            raise TaskFormatError(
                f"{where}: invalid JSON ({why}) in {_clip(text)}; "
                'each line must be one JSON object like {"question": "...", "answers": ["..."]}.',
                path=source,
                line=lineno,
            ) from None
        if not isinstance(obj, dict):
            raise TaskFormatError(
                f"{where}: expected a JSON object, got {type(obj).__name__} {_clip(text)}; "
                'write {"question": "...", "answers": ["..."]}.',
                path=source,
                line=lineno,
            )
        obj.setdefault("id", str(lineno))
        try:
            item = TaskItem.model_validate(obj)
        except ValidationError as exc:
            raise TaskFormatError(f"{where}: {_describe(exc)}.", path=source, line=lineno) from None
        if item.id in first_line_of:
            raise TaskFormatError(
                f"{where}: duplicate id {item.id!r} (first used on line {first_line_of[item.id]}); "
                "ids must be unique: rename one, or drop the ids to use line numbers.",
                path=source,
                line=lineno,
            )
        first_line_of[item.id] = lineno
        items.append(item)
    if not items:
        raise TaskFormatError(f"{source}: contains no task items; add one JSON object per line.", path=source)
    return items


def load_jsonl(path: str | os.PathLike[str]) -> list[TaskItem]:
    """Read and validate a task file; raises :class:`TaskFormatError` naming file and line."""
    p = Path(path)
    if not p.is_file():
        raise TaskNotFoundError(f"task file {str(p)!r} does not exist (or is not a file); check the path.")
    # Read bytes so that a decoding error can still be pinned to its line.
    try:
        with p.open("rb") as fh:
            return parse_jsonl_lines(fh, str(p))
    except OSError as exc:
        raise TaskFormatError(
            f"cannot read task file {str(p)!r}: {exc.strerror or exc}; check its permissions.", path=str(p)
        ) from None


def save_jsonl(items: Iterable[TaskItem], path: str | os.PathLike[str]) -> None:
    """Write items one per line (UTF-8, keys in schema order, unset optional keys omitted)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8", newline="\n") as fh:
        for item in items:
            fh.write(json.dumps(item.model_dump(exclude_none=True), ensure_ascii=False) + "\n")


def _shorten(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _clip(text: str, width: int = 80) -> str:
    return repr(_shorten(text, width))
