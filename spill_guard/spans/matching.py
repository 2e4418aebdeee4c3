"""Find a short extracted string inside a generated answer, tolerantly, at exact offsets.

An extractor (an LLM, a regex, a dataset's gold answer) rarely copies text byte for byte:
case changes, accents get dropped ("Bogota" for "Bogotá"), punctuation and spacing move
("Jean Paul" for "Jean-Paul", "1234" for "1,234"), a trailing period appears. We therefore
compare *folded* views of both strings and map the match back to the original characters.

The folded view keeps only letters and digits (accents removed, case folded, compatibility
forms such as ligatures expanded) and decimal points inside numbers; thousands separators
inside numbers vanish; every other run of whitespace, punctuation or symbols becomes a
single *gap*. Each kept character remembers which original character it came from, so a
match in the folded view gives exact offsets in the original text (including combining
accents attached to its last letter).

Matching rules, in order:

1. *strict*: same letters/digits and gaps in the same places ("new york" ~ "New-York");
2. *loose* (only if strict finds nothing): same letters/digits, gaps ignored
   ("1234" ~ "1,234", "NewYork" ~ "New York").

Both require word boundaries at the ends, so "Rome" is not found inside "Romeo" and "3" is
not found inside "13" (scripts written without spaces, such as Chinese or Japanese, are
exempt). A needle with no letters or digits at all (e.g. "😀", "—") is searched verbatim.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.spans.base import CharSpan

Prefer = Literal["last", "first"]

# Letters that Unicode does not decompose into base letter + accent, but that people (and
# models) routinely write without the stroke: "Søren" ~ "Soren", "Łódź" ~ "Lodz".
_EXTRA_FOLDS = {
    "ø": "o",
    "Ø": "o",
    "ł": "l",
    "Ł": "l",
    "đ": "d",
    "Đ": "d",
    "ð": "d",
    "Ð": "d",
    "æ": "ae",
    "Æ": "ae",
    "œ": "oe",
    "Œ": "oe",
    "þ": "th",
    "Þ": "th",
    "ı": "i",
}

# Scripts written without spaces between words: a match there needs no word boundary.
_UNSPACED_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN")


@dataclass
class _Folded:
    """Folded view of a text: one entry per kept letter/digit, with its origin."""

    chars: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # original [start, end) of each entry
    ends: list[int] = field(default_factory=list)
    gap_before: list[bool] = field(default_factory=list)  # separator precedes it
    first_of_char: list[bool] = field(default_factory=list)  # first entry its original char made
    last_of_char: list[bool] = field(default_factory=list)
    unspaced: list[bool] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.chars)


def _fold_char(ch: str) -> str:
    if ch in _EXTRA_FOLDS:
        return _EXTRA_FOLDS[ch]
    decomposed = unicodedata.normalize("NFKD", ch)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _is_unspaced(ch: str) -> bool:
    return unicodedata.name(ch, "").startswith(_UNSPACED_SCRIPTS)


def _numeric_punct(text: str, i: int) -> str | None:
    """How punctuation inside a number folds: ``"glue"``, ``"keep"`` or ``None`` (a gap).

    A thousands separator ("1,234", "1 234" with a thin space) is dropped without a gap,
    so "1234" matches it and "1" does not match inside it. A decimal point ("3.5") is kept
    as a character, so "3" is not found inside "3.5" and "35" does not match it.
    """
    ch = text[i]
    if i == 0 or not text[i - 1].isdigit():
        return None
    if ch == "." and i + 1 < len(text) and text[i + 1].isdigit():
        return "keep"
    if ch in ",\u202f\u2009" and text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3:
        if i + 4 == len(text) or not text[i + 4].isdigit():
            return "glue"
    return None


def fold(text: str) -> _Folded:
    """Build the folded view of ``text`` (see module doc)."""
    view = _Folded()
    gap = False
    for i, ch in enumerate(text):
        if unicodedata.combining(ch):
            # A combining accent belongs to the letter before it: widen that letter's
            # span so a match ending on it includes the accent ("Bogota\u0301").
            if view.ends and view.ends[-1] == i and not gap:
                view.ends[-1] = i + 1
            continue
        role = _numeric_punct(text, i)
        if role == "glue":
            continue  # thousands separator: "1,234" folds like "1234", with no gap inside
        kept = ["."] if role == "keep" else [c for c in _fold_char(ch) if c.isalnum()]
        if not kept:
            gap = True
            continue
        unspaced = _is_unspaced(ch)
        for k, c in enumerate(kept):
            view.chars.append(c)
            view.starts.append(i)
            view.ends.append(i + 1)
            view.gap_before.append(gap and k == 0)
            view.first_of_char.append(k == 0)
            view.last_of_char.append(k == len(kept) - 1)
            view.unspaced.append(unspaced)
        gap = False
    return view


def _boundary_ok(hay: _Folded, p: int, q: int) -> bool:
    """True if hay[p:q] starts and ends on word boundaries and on whole original chars."""
    if not (hay.first_of_char[p] and hay.last_of_char[q - 1]):
        return False  # would cut an expansion such as "ß" -> "ss" in half
    left = p == 0 or hay.gap_before[p] or hay.unspaced[p] or hay.unspaced[p - 1]
    right = q == len(hay.chars) or hay.gap_before[q] or hay.unspaced[q - 1] or hay.unspaced[q]
    return left and right


def _candidates(hay: _Folded, needle: _Folded) -> tuple[list[int], list[int]]:
    """Start positions (in the folded view) of strict and of loose-only matches."""
    h, n = hay.text, needle.text
    strict: list[int] = []
    loose: list[int] = []
    p = h.find(n)
    while p != -1:
        q = p + len(n)
        if _boundary_ok(hay, p, q):
            same_gaps = all(hay.gap_before[p + k] == needle.gap_before[k] for k in range(1, len(n)))
            (strict if same_gaps else loose).append(p)
        p = h.find(n, p + 1)
    return strict, loose


def find_all_answers(haystack: str, needle: str) -> list[CharSpan]:
    """Every tolerant match of ``needle`` in ``haystack``, in text order.

    Strict matches if there are any, else loose ones (see module doc); ``[]`` if none.
    """
    _check_str("haystack", haystack)
    _check_str("needle", needle)
    target = needle.strip()
    if not target or not haystack.strip():
        return []
    folded_needle = fold(target)
    if not folded_needle.chars:
        return _verbatim(haystack, target)
    hay = fold(haystack)
    strict, loose = _candidates(hay, folded_needle)
    width = len(folded_needle.chars)
    spans = [CharSpan.within(haystack, hay.starts[p], hay.ends[p + width - 1]) for p in (strict or loose)]
    return [s for s in spans if s is not None]


def find_answer(haystack: str, needle: str, *, prefer: Prefer = "last") -> CharSpan | None:
    """The span of ``needle`` in ``haystack`` (tolerant match, exact offsets), or ``None``.

    ``prefer`` picks among several matches. The default is the *last* one because
    generations usually restate the question or reason first and state the answer last
    ("Is it Paris or Lyon? ... so the answer is Paris"): the final mention is the one the
    model commits to, and the tokens the paper wants to score. ``"first"`` suits
    answer-first styles.

    An empty or whitespace-only needle is never found (``None``): nothing was extracted.
    """
    if prefer not in ("last", "first"):
        raise InvalidParameterError(f"prefer must be 'last' or 'first', got {prefer!r}.")
    matches = find_all_answers(haystack, needle)
    if not matches:
        return None
    return matches[-1] if prefer == "last" else matches[0]


def _verbatim(haystack: str, target: str) -> list[CharSpan]:
    # No letters or digits to fold: fall back to exact occurrences (emoji, symbols).
    found: list[CharSpan] = []
    p = haystack.find(target)
    while p != -1:
        span = CharSpan.within(haystack, p, p + len(target))
        if span is not None:
            found.append(span)
        p = haystack.find(target, p + 1)
    return found


def _check_str(what: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str, got {type(value).__name__} ({value!r}).")
