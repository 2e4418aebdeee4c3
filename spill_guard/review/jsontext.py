"""Strict JSON text for log lines: written exactly, read back without surprises.

Writing: no NaN/Infinity (other readers reject them), and *lone surrogates* (text that came
from bytes that were not UTF-8, e.g. ``sys.argv`` decoded with ``surrogateescape``) are
written as ``\\udcff`` JSON escapes. Such a line is valid UTF-8, and ``json.loads`` gives
back the very same Python string, so nothing a caller passed is lost or refused.

Reading: ``NaN``/``Infinity`` tokens and numbers too large for a float (``1e400``) read as
``None``, so a record read back never carries a non-finite number that a later
``allow_nan=False`` dump (export, rewrite) would choke on.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape_surrogates(text: str) -> str:
    """``text`` with each lone surrogate as a JSON ``\\uXXXX`` escape.

    Only valid on JSON text: there a surrogate can only sit inside a string literal, where the
    escape means the same character.
    """
    return _SURROGATE.sub(_escape_surrogate, text)


def dumps_line(obj: Any) -> str:
    """One line of strict JSON that always encodes as UTF-8 (see module doc)."""
    line = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = escape_surrogates(line)
    return line


def _finite_or_none(literal: str) -> float | None:
    value = float(literal)
    return value if math.isfinite(value) else None


def _none(_constant: str) -> None:
    return None


# Built once: json.loads(..., parse_float=...) would build a new decoder (and its scanner) per line.
_DECODER = json.JSONDecoder(parse_constant=_none, parse_float=_finite_or_none)


def loads_strict(text: str | bytes) -> Any:
    """Parse JSON with every non-finite number read as ``None``.

    Raises ``ValueError`` (bad JSON, bad UTF-8, an integer of more than 4300 digits) or
    ``RecursionError`` (absurdly deep nesting); callers turn both into a skipped line.
    """
    if isinstance(text, (bytes, bytearray)):
        text = text.decode(json.detect_encoding(text), "surrogatepass")  # as json.loads does
    return _DECODER.decode(text)
