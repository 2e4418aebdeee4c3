"""Span locators that need no second model call: rules over the answer text alone.

They are fast and deterministic, and weaker than the paper's LLM extractor; use them for
answers with a predictable shape (numbers, quoted or bold answers), as fallbacks, or as a
cheap baseline. Each class documents its rule; all follow the contract of
:mod:`spill_guard.spans.base` (offsets into the answer, stripped, never empty).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

from spill_guard.errors import InvalidParameterError
from spill_guard.spans.base import CharSpan, LocateResult, Reason, SpanLocator
from spill_guard.spans.matching import Prefer, find_answer

_TRAILING_PUNCT = ".,;:!?…"


def trimmed_span(answer: str, start: int, end: int) -> CharSpan | None:
    """``answer[start:end]`` without surrounding whitespace or trailing sentence punctuation."""
    while start < end and answer[start].isspace():
        start += 1
    while end > start and (answer[end - 1].isspace() or answer[end - 1] in _TRAILING_PUNCT):
        end -= 1
    return CharSpan.within(answer, start, end)


# ------------------------------------------------------------------------------ numeric
# A number: optional attached minus, digits with optional thousands groups, optional decimals.
_NUMBER = re.compile(r"[-−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
# Words that introduce a result; "=" and "≈" need no word boundary ("x=5").
_RESULT_CUE = re.compile(r"(?i)\b(?:is|are|was|were|equals|gives|makes)\b|[=≈]")


class NumericLocator(SpanLocator):
    """The answer's number: the first number after the last result cue, else the last number.

    A result cue is ``=``, ``≈`` or the words *is, are, was, were, equals, gives, makes*. Cues
    are tried from last to first until one has a number after it, so "6 - 3 is 3." gives the
    second 3 and "2 + 2 is 4, which is even." gives 4. Without any cue followed by a number,
    the last number wins (answers usually end with the result).

    Numbers may carry an attached minus (``-3``, ``−3``), thousands groups (``1,234``) and
    decimals (``3.5``; a trailing sentence period is not a decimal point). Digits glued to
    letters are part of a word and skipped: ``H2O``, ``mp3``, ``3rd``, ``5km``,
    ``COVID-19``. A minus right after a letter or digit is an operator (``6-3``), not a sign.
    """

    name = "numeric"

    def _locate(self, answer: str, question: str | None) -> LocateResult:
        numbers = list(self._numbers(answer))
        if not numbers:
            return self._result(None, "no standalone number in the answer")
        for cue in reversed(list(_RESULT_CUE.finditer(answer))):
            after = [n for n in numbers if n.start >= cue.end()]
            if after:
                return self._result(after[0], f"first number after the cue {cue.group()!r} at {cue.start()}")
        return self._result(numbers[-1], "last number (no result cue followed by a number)")

    @staticmethod
    def _numbers(answer: str) -> Iterable[CharSpan]:
        for m in _NUMBER.finditer(answer):
            start, end = m.start(), m.end()
            if answer[start] in "-−" and start > 0 and (answer[start - 1].isalnum() or answer[start - 1] == "_"):
                start += 1  # "6-3", "COVID-19": the dash is an operator or a hyphen, not a sign
            before = answer[start - 1] if start > 0 else ""
            before2 = answer[start - 2] if start > 1 else ""
            if before.isalnum() or before == "_":
                continue  # "H2O", "mp3"
            if before in ".," and before2.isdigit():
                continue  # tail of a malformed number such as "12345,678"
            if before in "-‐" and before2.isalpha():
                continue  # hyphenated word such as "COVID-19"
            if end < len(answer) and (answer[end].isalnum() or answer[end] == "_"):
                continue  # "3rd", "5km"
            span = CharSpan.within(answer, start, end)
            if span is not None:
                yield span


# ------------------------------------------------------------------------------- quoted
_BOLD = re.compile(r"\*\*(?=\S)([^\n]+?)(?<=\S)\*\*|__(?=\S)([^\n]+?)(?<=\S)__")
_QUOTES = re.compile(r'"([^"\n]+)"|“([^”\n]+)”|«([^»\n]+)»|„([^“”\n]+)[“”]')
# Single asterisks only when they hug the text, so "2 * 3 * 4" is not italics.
_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])")


class QuotedLocator(SpanLocator):
    """Text the model marked: **bold** (or __bold__), then quotes, then *italics*.

    Kinds are tried in that order (models bold their answer; quotes may quote the question;
    italics are often mere emphasis). Within a kind the last mark wins by default, for the
    reason given in :func:`~spill_guard.spans.matching.find_answer`. Marked labels such as
    ``**Answer:**`` are skipped, and the inner text loses trailing punctuation. Quotes:
    ``"..."``, ``“...”``, ``«...»``, ``„...“``; single quotes are ignored (they collide with
    apostrophes). Marks never span lines.
    """

    name = "quoted"

    def __init__(self, *, prefer: Prefer = "last"):
        if prefer not in ("last", "first"):
            raise InvalidParameterError(f"prefer must be 'last' or 'first', got {prefer!r}.")
        self.prefer = prefer

    def _locate(self, answer: str, question: str | None) -> LocateResult:
        for kind, pattern in (("bold", _BOLD), ("quotes", _QUOTES), ("italics", _ITALIC)):
            spans = []
            for m in pattern.finditer(answer):
                group = m.lastindex or 1  # alternations: the one group that matched
                inner = answer[m.start(group) : m.end(group)].strip()
                if inner.endswith(":"):
                    continue  # a label like **Answer:**, the answer follows it
                span = trimmed_span(answer, m.start(group), m.end(group))
                if span is not None:
                    spans.append(span)
            if spans:
                chosen = spans[-1] if self.prefer == "last" else spans[0]
                return self._result(chosen, f"{self.prefer} of {len(spans)} {kind} span(s)")
        return self._result(None, "no bold, quoted or italic text")


# ---------------------------------------------------------------------------- answer is
# Sentence ends: terminal punctuation followed by whitespace or the end, or a line break.
# "3.5" is not an end (no space after the point); "Dr. Smith" is (a known limitation).
_SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)|\n")
_ANSWER_CUE = re.compile(r"(?i)\b(?:is|are|was|were|equals)\b|=|(?<!\d):(?!\d)")


class AnswerIsLocator(SpanLocator):
    """What follows the last "is"/"are"/"was"/"were"/"equals"/"="/":" of the first sentence.

    The first sentence *that contains such a cue* decides (so "Sure! The answer is 5." works);
    its content after the last cue, up to the sentence end, minus trailing punctuation, is
    the span. "The answer is X" and "Answer: X" are covered by the "is" and ":" cues. If the
    sentence ends right after a ":" ("Answer:\\nParis"), the next sentence is the answer.
    If the cue-bearing sentence has nothing after its last cue ("Yes, it is."), the result
    is ``None`` rather than a guess. The rule suits "<subject> is <answer>" phrasing; it
    fails on "<answer> is <description>" ("Paris is the capital of France.").
    """

    name = "answer_is"

    def _locate(self, answer: str, question: str | None) -> LocateResult:
        sentences = self._sentences(answer)
        for k, (start, end) in enumerate(sentences):
            cues = list(_ANSWER_CUE.finditer(answer, start, end))
            if not cues:
                continue
            last = cues[-1]
            span = trimmed_span(answer, last.end(), end)
            if span is not None:
                return self._result(span, f"after the cue {last.group()!r} in sentence {k + 1}")
            if last.group() == ":" and k + 1 < len(sentences):
                span = trimmed_span(answer, *sentences[k + 1])
                return self._result(span, f"sentence {k + 2}, after a sentence ending in ':'")
            return self._result(None, f"nothing after the cue {last.group()!r} in sentence {k + 1}")
        return self._result(None, "no sentence with 'is', 'are', '=' or ':'")

    @staticmethod
    def _sentences(answer: str) -> list[tuple[int, int]]:
        """``[start, end)`` of each non-blank sentence, terminators excluded."""
        bounds, start = [], 0
        for m in _SENTENCE_END.finditer(answer):
            if answer[start : m.start()].strip():
                bounds.append((start, m.start()))
            start = m.end()
        if answer[start:].strip():
            bounds.append((start, len(answer)))
        return bounds


# ------------------------------------------------------------------------- strip filler
_LEADING_FILLER = re.compile(
    r"""(?ix) \s*(?:
        (?:sure|certainly|of\s+course|okay|ok|alright|absolutely|great\s+question|good\s+question|well|hmm+|so)
            \b\s*[!,.:;]*
      | (?:i\s+think|i\s+believe|i\s+guess|i'?d\s+say|(?:i'?m|i\s+am)\s+(?:pretty\s+|fairly\s+)?sure
          |probably|perhaps|maybe)\b(?:\s+that\b)?\s*[,:]?
      | (?:(?:the|my|final|correct|short)\s+)*answer(?:\s+(?:is|would\s+be)\b|\s*:)\s*[:\-–—]?
      | here\s+is\s+the\s+answer\b\s*[:.!]?
    )""",
)
# End-of-sequence markers some pipelines leave in decoded text.
_TRAILING_EOS = re.compile(r"(?:\s|<\|[^|<>]*\|>|</s>|<eos>|<end_of_turn>)+$")
_WRAPPERS = (("**", "**"), ("__", "__"), ("*", "*"), ('"', '"'), ("“", "”"), ("«", "»"))


class StripFillerLocator(SpanLocator):
    """The whole answer minus leading filler, trailing punctuation and end-of-sequence debris.

    Leading filler, removed repeatedly: "Sure!", "Certainly,", "Of course.", "Okay,", "Well,",
    "Great question!", "I think (that)", "I believe", "I'm pretty sure", "Probably", "Maybe",
    "The (final/correct) answer is", "Answer:", "Here is the answer:". Trailing: whitespace,
    ``<|im_end|>``-style markers, ``</s>``, sentence punctuation. A single pair of wrappers
    around what remains (``**...**``, ``*...*``, quotes) is removed too. The rule fits short
    answers; on long ones it returns a long span (the whole answer, as the paper's
    "score everything" baseline does), never ``None`` unless only filler is left.
    """

    name = "strip_filler"

    def _locate(self, answer: str, question: str | None) -> LocateResult:
        start, end = 0, len(answer)
        while (m := _LEADING_FILLER.match(answer, start, end)) and m.end() > start:
            start = m.end()
        changed = True
        while changed:  # trailing markers and punctuation can interleave ("Paris.</s>")
            changed = False
            if m := _TRAILING_EOS.search(answer, start, end):
                end, changed = m.start(), m.start() != end
            while end > start and answer[end - 1] in _TRAILING_PUNCT:
                end, changed = end - 1, True
        span = trimmed_span(answer, start, end)
        if span is not None:
            span = self._unwrap(answer, span)
        return self._result(span, "answer without filler" if span else "only filler in the answer")

    @staticmethod
    def _unwrap(answer: str, span: CharSpan) -> CharSpan:
        for left, right in _WRAPPERS:
            text = span.text
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                inner = trimmed_span(answer, span.start + len(left), span.end - len(right))
                return inner if inner is not None else span
        return span


class WholeAnswerLocator(SpanLocator):
    """The whole generated answer (whitespace-stripped): the "score every token" baseline.

    No rule can miss, so every non-empty answer is scored; special tokens (end-of-turn) are
    still left out by the token mapping.
    """

    name = "full"

    def _locate(self, answer: str, question: str | None) -> LocateResult:
        return self._result(CharSpan.within(answer, 0, len(answer)), "the whole answer")


# ----------------------------------------------------------------------- composition
class CallableLocator(SpanLocator):
    """Wrap any function as a locator.

    ``fn(answer)`` — or ``fn(answer, question=...)`` if it has a ``question`` parameter —
    returns ``(start, end)`` offsets into the answer, a string to find in it (tolerantly,
    with :func:`~spill_guard.spans.matching.find_answer` and ``prefer``), a
    :class:`CharSpan`, or ``None`` for "no answer". Offsets are whitespace-stripped; a
    string that is not in the answer gives ``None`` with reason ``EXTRACTED_NOT_IN_ANSWER``.
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None, *, prefer: Prefer = "last"):
        if not callable(fn):
            raise InvalidParameterError(f"CallableLocator needs a callable, got {fn!r}.")
        if prefer not in ("last", "first"):
            raise InvalidParameterError(f"prefer must be 'last' or 'first', got {prefer!r}.")
        self.fn = fn
        fn_name: str = getattr(fn, "__name__", "callable")
        self.name = name or fn_name
        self.prefer = prefer
        try:
            self._takes_question = "question" in inspect.signature(fn).parameters
        except (TypeError, ValueError):  # some builtins have no signature
            self._takes_question = False

    def _locate(self, answer: str, question: str | None) -> LocateResult:
        out = self.fn(answer, question=question) if self._takes_question else self.fn(answer)
        if out is None:
            return self._result(None, "the function returned None")
        if isinstance(out, CharSpan):
            return self._result(CharSpan.within(answer, out.start, out.end), "span from the function")
        if isinstance(out, str):
            span = find_answer(answer, out, prefer=self.prefer)
            if span is None:
                reason = Reason.EXTRACTED_NOT_IN_ANSWER if out.strip() else Reason.NOT_FOUND
                return LocateResult(None, reason, self.name, f"{out!r} is not in the answer", extracted=out)
            return self._result(span, "string found in the answer", extracted=out)
        if isinstance(out, tuple) and len(out) == 2 and all(isinstance(v, int) for v in out):
            start, end = out
            if not 0 <= start <= end <= len(answer):
                raise InvalidParameterError(
                    f"locator function {self.name!r} returned offsets {out!r} for an answer of {len(answer)} "
                    "characters; return 0 <= start <= end <= len(answer), a substring, or None."
                )
            return self._result(CharSpan.within(answer, start, end), "offsets from the function")
        raise InvalidParameterError(
            f"locator function {self.name!r} returned {out!r} ({type(out).__name__}); "
            "return a (start, end) tuple of ints, a substring of the answer, a CharSpan, or None."
        )


class FirstOfLocator(SpanLocator):
    """Try locators in order; the first span found wins (e.g. quoted, then numeric, then all).

    The result's ``locator`` names the inner locator that found it. If none finds a span,
    the reason is ``NOT_FOUND`` and ``detail`` lists what each one said.
    """

    def __init__(self, locators: Iterable[SpanLocator], name: str | None = None):
        self.locators = list(locators)
        if not self.locators:
            raise InvalidParameterError("FirstOfLocator needs at least one locator, got none.")
        bad = [x for x in self.locators if not isinstance(x, SpanLocator)]
        if bad:
            raise InvalidParameterError(
                f"FirstOfLocator takes SpanLocator instances, got {bad!r}; wrap functions in CallableLocator."
            )
        self.name = name or "+".join(x.name for x in self.locators)

    def _locate(self, answer: str, question: str | None) -> LocateResult:
        said = []
        for locator in self.locators:
            result = locator.locate_with_reason(answer, question=question)
            if result.span is not None:
                return result
            said.append(f"{locator.name}: {result.reason.value}" + (f" ({result.detail})" if result.detail else ""))
        return self._result(None, "; ".join(said))
