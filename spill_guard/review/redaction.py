"""Redaction hooks: rewrite a :class:`ReviewRecord` before any sink stores it.

``redact_patterns`` replaces every match of the given regular expressions in every piece of
text a record holds: question, context, answers, span text, attempts, tags, model, spec,
locator, metadata keys *and* values at any depth, the label note and corrected answer, and any
field a later schema adds. Only the fields that are not free text are left alone: the id, the
timestamps, ``action``, ``label``, the reviewer's name (``labelled_by``) and the numbers. Sinks
also run a label note and a corrected answer given to ``set_label`` through the same hook, so
the label event is redacted too. Tokens are redacted *together*: the answer's token
texts are joined, matched as one string, and each match is replaced once in the token where
it starts (the other tokens it covers become empty), so a phone number split across five
tokens is still found and the heatmap keeps one entry per token score.

The ``ScoredAnswer`` payload (``record.scored``) is what lets calibration re-score an answer
later; it also contains the full prompt (question + context, verbatim) and token ids, which
decode back to the original text with the tokenizer. What happens to it is a trade-off,
chosen with ``scored=``:

* ``"drop_prompt"`` (default): the prompt text and prompt ids are removed, the answer text
  and token texts inside it are redacted; the trace (numbers) and the *answer token ids*
  stay, so every scorer/pooling/span can still be re-computed. The answer ids still decode
  to the unredacted answer: choose ``"drop"`` if answers themselves may hold secrets.
* ``"drop"``: ``scored`` becomes ``None``. Nothing decodable remains; no re-scoring.
* ``"keep"``: stored as produced (prompt and ids unredacted).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Literal

from spill_guard.errors import InvalidParameterError
from spill_guard.review.record import ReviewRecord

EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
# Phone numbers written with separators: optional +country code, optional (area) code, then
# at least three digit groups ("555-123-4567", "+33 1 23 45 67 89", "(555) 123-4567").
# Runs of bare digits ("1234567") and ISO dates are left alone: answers are full of numbers.
PHONE_PATTERN = (
    r"(?<![\w+])(?!\d{4}-\d{2}-\d{2}(?!\d))(?:\+\d{1,3}[ .-]?)?"
    r"(?:\(\d{1,4}\)[ .-]?\d{2,4}(?:[ .-]\d{2,4}){1,4}|\d{1,4}(?:[ .-]\d{2,4}){2,5})(?![\w-])"
)
DEFAULT_PII_PATTERNS = (EMAIL_PATTERN, PHONE_PATTERN)

# Record fields that hold no caller text (generated ids and times, enums, numbers).
NOT_FREE_TEXT = frozenset(
    {
        "schema_version",
        "id",
        "created_at",
        "labelled_at",
        "labelled_by",  # who labelled: stored as given, like the id (see ReviewSink.set_label)
        "action",
        "label",
        "flagged",
        "score",
        "threshold",
        "token_scores",
    }
)

ScoredPolicy = Literal["drop_prompt", "drop", "keep"]
_SCORED_POLICIES = ("drop_prompt", "drop", "keep")


def _compile(patterns: Iterable[str | re.Pattern[str]]) -> re.Pattern[str]:
    parts = []
    for p in patterns:
        source = p.pattern if isinstance(p, re.Pattern) else str(p)
        try:
            re.compile(source)
        except re.error as exc:
            raise InvalidParameterError(f"redaction pattern {source!r} is not a valid regex: {exc}") from exc
        if re.compile(source).match(""):
            raise InvalidParameterError(
                f"redaction pattern {source!r} matches the empty string; it would "
                "redact everywhere. Make it match at least one character."
            )
        parts.append(f"(?:{source})")
    if not parts:
        raise InvalidParameterError("redact_patterns() needs at least one pattern, e.g. DEFAULT_PII_PATTERNS.")
    return re.compile("|".join(parts))


def _redacted_dict(value: dict, deep: Callable[[Any], Any]) -> dict:
    """``value`` with keys and values redacted; keys that redact to the same text stay apart.

    ``{"bob@x.org": 1, "amy@y.org": 2}`` becomes ``{"[REDACTED]": 1, "[REDACTED] (2)": 2}``:
    merging them would silently drop one of the caller's values.
    """
    out: dict = {}
    for key, item in value.items():
        new_key = deep(key) if isinstance(key, str) else key
        if new_key in out:
            n = 2
            while f"{new_key} ({n})" in out:
                n += 1
            new_key = f"{new_key} ({n})"
        out[new_key] = deep(item)
    return out


def redact_token_texts(tokens: list[str], regex: re.Pattern[str], replacement: str) -> list[str]:
    """Redact matches of ``regex`` in ``"".join(tokens)``, keeping one output per token."""
    joined = "".join(tokens)
    matches = [(m.start(), m.end()) for m in regex.finditer(joined) if m.end() > m.start()]
    if not matches:
        return list(tokens)
    out: list[str] = []
    pos = 0
    for tok in tokens:
        pieces = []
        for i in range(pos, pos + len(tok)):
            hit = next(((s, e) for s, e in matches if s <= i < e), None)
            if hit is None:
                pieces.append(joined[i])
            elif i == hit[0]:
                pieces.append(replacement)
        out.append("".join(pieces))
        pos += len(tok)
    return out


def _indexes(answer: str, token: dict) -> bool:
    """Whether ``token`` carries offsets into ``answer`` that give its text (a ScoredAnswer token)."""
    start, end = token.get("start"), token.get("end")
    return (
        type(start) is int
        and type(end) is int
        and 0 <= start <= end <= len(answer)
        and answer[start:end] == token.get("text")
    )


def redact_with_offsets(
    answer: str, tokens: list[dict], regex: re.Pattern[str], replacement: str
) -> tuple[str, list[dict]]:
    """Redact ``answer`` and move each token's ``start``/``end`` with it: ``text == answer[start:end]`` still holds.

    The tokens a match covers share its replacement in proportion (``[RE``, ``DACT``, ``ED]``),
    and the first and last of them keep at least one character, so a span that starts or ends
    on redacted text (the ``full`` span of "Write to bob@example.org") still covers the tokens
    it covered before redaction.
    """
    matches = [(m.start(), m.end()) for m in regex.finditer(answer) if m.end() > m.start()]
    pieces, pos = [], 0
    for start, end in matches:
        pieces += [answer[pos:start], replacement]
        pos = end
    redacted = "".join(pieces) + answer[pos:]

    def moved(offset: int) -> int:
        shift = 0
        for start, end in matches:
            if offset <= start:
                break
            if offset < end:  # inside a match: the same fraction of its replacement, never its very ends
                inner = (offset - start) * len(replacement) // (end - start)
                if len(replacement) >= 2:
                    inner = min(max(inner, 1), len(replacement) - 1)
                return start + shift + inner
            shift += len(replacement) - (end - start)
        return offset + shift

    out = []
    for tok in tokens:
        start, end = moved(tok["start"]), moved(tok["end"])
        out.append({**tok, "start": start, "end": end, "text": redacted[start:end]})
    return redacted, out


def redact_patterns(
    patterns: Iterable[str | re.Pattern[str]] = DEFAULT_PII_PATTERNS,
    replacement: str = "[REDACTED]",
    *,
    scored: ScoredPolicy = "drop_prompt",
) -> Callable[[ReviewRecord], ReviewRecord]:
    """A redaction hook for a sink: ``open_log(path, redact=redact_patterns([...]))``.

    ``patterns`` are regexes (strings or compiled); the default finds e-mail addresses and
    phone numbers. ``scored`` decides what happens to the re-scoring payload (module doc).
    """
    if scored not in _SCORED_POLICIES:
        raise InvalidParameterError(f"scored={scored!r} is not one of {list(_SCORED_POLICIES)}.")
    regex = _compile(patterns)

    def text(value: str | None) -> str | None:
        return None if value is None else regex.sub(replacement, value)

    def deep(value: Any) -> Any:
        if isinstance(value, str):
            return regex.sub(replacement, value)
        if isinstance(value, dict):
            return _redacted_dict(value, deep)
        if isinstance(value, (list, tuple)):
            return [deep(v) for v in value]
        return value

    def scored_payload(payload: dict | None) -> dict | None:
        if payload is None or scored == "keep":
            return payload
        if scored == "drop":
            return None
        payload = dict(payload)
        payload["prompt"] = ""
        payload["prompt_ids"] = []
        answer = payload.get("answer", "")
        tokens = [dict(t) for t in payload.get("tokens", [])]
        if isinstance(answer, str) and all(_indexes(answer, t) for t in tokens):
            # A ScoredAnswer's tokens index its answer: keep it so, or every span calibration
            # later maps to tokens would land on the wrong ones.
            payload["answer"], payload["tokens"] = redact_with_offsets(answer, tokens, regex, replacement)
            return payload
        payload["answer"] = text(answer)
        for tok, new in zip(tokens, redact_token_texts([t.get("text", "") for t in tokens], regex, replacement)):
            tok["text"] = new
        payload["tokens"] = tokens
        return payload

    def redact(record: ReviewRecord) -> ReviewRecord:
        # Every field except the few that cannot hold caller text, so a field added to the
        # schema later is redacted by default instead of leaking by default.
        update = {
            name: deep(getattr(record, name))
            for name in ReviewRecord.model_fields
            if name not in NOT_FREE_TEXT and name not in ("tokens", "scored")
        }
        update["tokens"] = redact_token_texts(record.tokens, regex, replacement)
        update["scored"] = scored_payload(record.scored)
        return record.model_copy(update=update)

    return redact
