"""Correctness of a located answer span against the accepted answers.

The judge looks only at the *answer span* (the short exact answer located in a generation),
never at the whole generation: "does a gold string occur anywhere in the output" is fooled
by a model echoing the question ("6 - 3 is 1." contains "3").

Both the span and each gold answer go through
:func:`spill_guard.tasks.normalize.normalize_answer`
(accents, case, punctuation, articles, number formats and number words). Then, on the
normalised tokens, the span is **correct** when, for some gold answer ``g``:

1. the span equals ``g``; or
2. ``g`` occurs in the span as a whole-token run (so "3" never matches inside "33" or
   "3.5", "paris" never inside "parisian") **and** that occurrence survives two checks:

   a. *Not negated*: none of the (up to) 3 tokens before it is a negation word
      ("not", "no", "never", "isnt", ...), scanning back and stopping early at a contrast
      word ("but", "rather", "instead", "actually"). "Canberra, not Sydney" and
      "not Sydney but Canberra" are right; "not Canberra" is wrong.
   b. *No conflicting number* (only when ``g`` contains a number): every other number in
      the span is equal to ``g``'s number, is itself negated ("85, not 86"), or comes
      before the last result marker ("=", "is", "equals", "makes", "gives", "so", ...)
      that precedes the occurrence, i.e. the occurrence is the final result of a written-out
      computation ("37 + 48 = 85"). "6 - 3 is 1" with gold "3" is wrong: the number after
      the last marker is 1.

A span containing the word "or" (when no gold answer does) is a hedge: it is correct only
if *every* alternative is correct on its own ("Aluminium or Aluminum" yes,
"Sydney or Canberra" no). Non-numeric answers tolerate extra words ("Paris, France",
"the city of Paris"); a list of several candidates joined by "and" or commas is *not*
detected, which is why the judge must be given the located span, not the whole generation.
``None`` or an empty span is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spill_guard.errors import InvalidInputError
from spill_guard.tasks.normalize import is_number, tokens

NEGATIONS = frozenset(
    "not no never nor neither isnt arent wasnt werent dont doesnt didnt cannot cant wont aint nothing none".split()
)
CONTRASTS = frozenset("but rather instead actually however".split())
RESULT_MARKERS = frozenset(
    "equals equal is are was makes make made gives give gets get got so therefore thus "
    "hence result total answer".split()
)
NEGATION_WINDOW = 3


@dataclass(frozen=True)
class Verdict:
    """The judge's decision with the gold answer it matched and a one-word-ish reason."""

    correct: bool
    reason: str
    matched: str | None = None


def _negated(span: list[str], start: int) -> bool:
    """True when a negation word sits within NEGATION_WINDOW tokens before ``start``."""
    for k in range(start - 1, max(-1, start - 1 - NEGATION_WINDOW), -1):
        if span[k] in CONTRASTS:
            return False
        if span[k] in NEGATIONS:
            return True
    return False


def _occurrences(span: list[str], gold: list[str]) -> list[int]:
    n = len(gold)
    return [i for i in range(len(span) - n + 1) if span[i : i + n] == gold]


def _numbers_conflict(span: list[str], start: int, gold: list[str]) -> bool:
    """Whether numbers outside the occurrence contradict it (rule 2b)."""
    end = start + len(gold)
    gold_numbers = {t for t in gold if is_number(t)}
    others = [
        k
        for k, t in enumerate(span)
        if (k < start or k >= end) and is_number(t) and t not in gold_numbers and not _negated(span, k)
    ]
    if not others:
        return False
    markers = [k for k in range(start) if span[k] in RESULT_MARKERS]
    if not markers:
        return True
    # Operands before the last marker are the computation; anything after it competes.
    return any(k > markers[-1] for k in others)


def _judge_tokens(span: list[str], golds: list[tuple[str, list[str]]]) -> Verdict:
    if not span:
        return Verdict(False, "empty span")
    for text, gold in golds:
        if span == gold:
            return Verdict(True, "exact match", text)
    reason = "no gold answer in span"
    for text, gold in golds:
        for start in _occurrences(span, gold):
            if _negated(span, start):
                reason = "gold answer negated"
                continue
            if any(is_number(t) for t in gold) and _numbers_conflict(span, start, gold):
                reason = "conflicting number in span"
                continue
            return Verdict(True, "gold answer in span", text)
    return Verdict(False, reason)


def judge_verdict(span_text: str | None, answers: Sequence[str]) -> Verdict:
    """Judge a span and say why (see the module docstring for the exact rule)."""
    if isinstance(answers, str) or not answers:
        raise InvalidInputError(
            f"answers must be a non-empty list of strings, got {answers!r}; e.g. judge(span, ['Paris'])."
        )
    golds = [(a, tokens(a)) for a in answers]
    golds = [(a, g) for a, g in golds if g]
    if not golds:
        raise InvalidInputError(
            f"every accepted answer in {list(answers)!r} is empty after normalisation "
            "(only punctuation or articles); give at least one answer with a word or number."
        )
    span = tokens(span_text)
    if "or" in span and not any("or" in g for _, g in golds):
        parts: list[list[str]] = [[]]
        for t in span:
            if t == "or":
                parts.append([])
            else:
                parts[-1].append(t)
        parts = [p for p in parts if p]
        verdicts = [_judge_tokens(p, golds) for p in parts]
        if verdicts and all(v.correct for v in verdicts):
            return Verdict(True, "every alternative is correct", verdicts[0].matched)
        return Verdict(False, "hedged between alternatives")
    return _judge_tokens(span, golds)


def judge(span_text: str | None, answers: Sequence[str]) -> bool:
    """True when the located answer span is a correct answer (rule in the module docstring).

    >>> judge("Paris, France", ["Paris"]), judge("1", ["3"]), judge("6 - 3 is 1", ["3"])
    (True, False, False)
    """
    return judge_verdict(span_text, answers).correct


__all__ = ["Verdict", "judge", "judge_verdict"]
