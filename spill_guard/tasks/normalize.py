"""Answer normalisation: map surface variants of the same answer to one token string.

:func:`normalize_answer` applies, in this order:

1. Unicode NFKD and removal of combining marks, so accents vanish ("Bogotá" -> "bogota"),
   then ``casefold``.
2. Dash-like characters (U+2212 minus, en/em dash) become ASCII ``-``; ``=`` becomes the
   word ``equals`` so the judge can still see where a computation ends.
3. Numbers are canonicalised: thousands commas dropped only when they group exactly three
   digits ("1,234" -> "1234"; "1,2" stays two numbers), trailing decimal zeros dropped
   ("3.0" -> "3", "2.50" -> "2.5"), and a ``-`` glued to the front of a number keeps it
   negative ("-3") unless it directly follows a letter or digit ("6-3" is subtraction).
4. Apostrophes are deleted (so "Nuku'alofa" == "Nukualofa"); every other punctuation
   character becomes a space (so "Port-au-Prince" == "Port au Prince").
5. Number words become digits: zero..nineteen, the tens, and tens+unit compounds
   ("eighty-five", "eighty five" -> "85"). "negative N" becomes "-N"; "minus N" is left
   alone because in an answer it usually means subtraction. Larger words ("hundred") are
   not folded.
6. The articles a / an / the are dropped and whitespace collapses to single spaces.

The result is a space-joined token string; :func:`tokens` gives the list.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
UNIT_WORDS: dict[str, int] = {w: i for i, w in enumerate(_UNITS)}
TENS_WORDS: dict[str, int] = {w: 20 + 10 * i for i, w in enumerate(_TENS)}

ARTICLES = frozenset({"a", "an", "the"})

_DASHES = dict.fromkeys(map(ord, "\u2212\u2012\u2013\u2014\u2010\u2011\ufe63\uff0d"), "-")
_APOSTROPHES = dict.fromkeys(map(ord, "'\u2018\u2019\u02bc\u02bb`\u00b4"), None)

# A number: thousands-grouped ("1,234,567.5") or plain ("1234", "3.25"). The optional sign
# is only taken when the "-" is not glued to a preceding word or digit ("6-3", "x-3").
_NUMBER = re.compile(r"(?<![\w.])(-)?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d])")
_WORD = re.compile(r"-?\d+(?:\.\d+)?|[^\W_]+")
NUMERIC_TOKEN = re.compile(r"-?\d+(?:\.\d+)?")


def canonical_number(text: str) -> str:
    """Canonical digit string for a number literal: ``"1,234.50"`` -> ``"1234.5"``."""
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return text
    if value == 0:
        return "0"  # "-0" and "0.00" are zero
    # normalize() strips trailing zeros; format 'f' avoids exponent notation ("1E+3").
    out = format(value.normalize(), "f")
    return out


def _number_sub(match: re.Match[str]) -> str:
    sign, digits = match.group(1) or "", match.group(2)
    # Surround with spaces so "85." or "$85" leave a clean numeric token behind.
    return f" {canonical_number(sign + digits)} "


def _fold_number_words(words: list[str]) -> list[str]:
    """Replace number words (and tens+unit compounds) by digit strings."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        value: int | None = None
        if w in TENS_WORDS:
            value = TENS_WORDS[w]
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if nxt in UNIT_WORDS and 0 < UNIT_WORDS[nxt] < 10:
                value += UNIT_WORDS[nxt]
                i += 1
        elif w in UNIT_WORDS:
            value = UNIT_WORDS[w]
        if value is None:
            out.append(w)
        else:
            out.append(str(value))
        i += 1
    # "negative 3" is a sign; "minus" is left alone because it usually means subtraction.
    signed: list[str] = []
    for w in out:
        if signed and signed[-1] == "negative" and NUMERIC_TOKEN.fullmatch(w) and not w.startswith("-"):
            signed[-1] = canonical_number("-" + w)
        else:
            signed.append(w)
    return signed


def tokens(text: str | None) -> list[str]:
    """Normalised tokens of ``text`` (see the module docstring); ``None`` gives ``[]``."""
    if not text:
        return []
    s = unicodedata.normalize("NFKD", text)
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).casefold()
    s = s.translate(_DASHES).translate(_APOSTROPHES)
    s = s.replace("=", " equals ")
    s = _NUMBER.sub(_number_sub, s)
    words = _WORD.findall(s)
    words = _fold_number_words(words)
    return [w for w in words if w not in ARTICLES]


def normalize_answer(text: str | None) -> str:
    """Normalised form of an answer string, e.g. ``"The  Aluminium!" -> "aluminium"``."""
    return " ".join(tokens(text))


def is_number(token: str) -> bool:
    """True for a canonical numeric token such as ``"85"``, ``"-3"`` or ``"2.5"``."""
    return NUMERIC_TOKEN.fullmatch(token) is not None
