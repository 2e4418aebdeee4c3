"""The span-locator interface: find the *exact answer* inside a long generated answer.

The paper scores only the tokens of the exact answer ("Rome" in "The capital of Italy is
Rome."), not the whole generation (SPEC §2). A :class:`SpanLocator` finds that answer as a
character span; :mod:`spill_guard.spans.tokens` then maps it to the generated tokens.

Contract, shared by every locator (checked by the base class, so a subclass cannot break it):

* offsets index the answer text passed to :meth:`SpanLocator.locate`, Python ``str``
  indices (code points), so ``answer[span.start:span.end] == span.text``;
* the span is stripped of surrounding whitespace;
* a span is never empty: "nothing found" is ``None``, never ``CharSpan(3, 3, "")``;
* an empty or whitespace-only answer (an empty generation) gives ``None``, not an error.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass

from spill_guard.errors import InvalidInputError, InvalidParameterError


@dataclass(frozen=True)
class CharSpan:
    """A non-empty, whitespace-stripped slice ``[start, end)`` of an answer, with its text."""

    start: int
    end: int
    text: str

    def __post_init__(self) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.start, self.end)):
            raise InvalidInputError(f"CharSpan offsets must be integers, got start={self.start!r}, end={self.end!r}.")
        if not 0 <= self.start < self.end:
            raise InvalidInputError(
                f"CharSpan needs 0 <= start < end, got [{self.start}, {self.end}); "
                "return None for 'no answer' instead of an empty span."
            )
        if not isinstance(self.text, str) or len(self.text) != self.end - self.start:
            raise InvalidInputError(
                f"CharSpan text {self.text!r} does not have length end - start = {self.end - self.start}; "
                "build spans with CharSpan.within(answer, start, end)."
            )
        if self.text != self.text.strip():
            raise InvalidInputError(
                f"CharSpan text {self.text!r} has surrounding whitespace; build it with "
                "CharSpan.within(answer, start, end), which strips it."
            )

    @classmethod
    def within(cls, answer: str, start: int, end: int) -> CharSpan | None:
        """The span ``answer[start:end]`` with surrounding whitespace removed; ``None`` if blank.

        Raises :class:`InvalidInputError` if the offsets do not fit inside ``answer``.
        """
        if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start <= end <= len(answer):
            raise InvalidInputError(
                f"offsets ({start!r}, {end!r}) do not fit an answer of {len(answer)} characters; "
                "pass 0 <= start <= end <= len(answer)."
            )
        while start < end and answer[start].isspace():
            start += 1
        while end > start and answer[end - 1].isspace():
            end -= 1
        if start == end:
            return None
        return cls(start, end, answer[start:end])


class Reason(str, enum.Enum):
    """Why a locator returned what it returned (stable strings, safe to count in a benchmark)."""

    FOUND = "found"
    EMPTY_ANSWER = "empty_answer"  # the generation is empty or whitespace only
    NOT_FOUND = "not_found"  # the locator's rule matched nothing
    EXTRACTOR_NO_ANSWER = "extractor_no_answer"  # the LLM extractor said "NO ANSWER"
    EXTRACTOR_EMPTY = "extractor_empty"  # the LLM extractor produced no usable text
    EXTRACTED_NOT_IN_ANSWER = "extracted_not_in_answer"  # its text is not in the generation


@dataclass(frozen=True)
class LocateResult:
    """A span (or ``None``) plus why, and which locator produced it.

    ``locator`` names the locator that decided the outcome: with fallbacks or
    :class:`~spill_guard.spans.cheap.FirstOfLocator` it is the inner locator, so a benchmark
    can count how often the primary method worked. ``extracted`` is the raw text an
    extractor proposed (LLM locators), kept for error analysis.
    """

    span: CharSpan | None
    reason: Reason
    locator: str
    detail: str = ""
    extracted: str | None = None

    def __post_init__(self) -> None:
        # One invariant keeps benchmark statistics honest: FOUND <=> a span is present.
        if (self.span is not None) != (self.reason is Reason.FOUND):
            raise InvalidParameterError(
                f"locator {self.locator!r} returned reason {self.reason.value!r} with span {self.span!r}; "
                "use Reason.FOUND exactly when a span is returned."
            )


class SpanLocator(ABC):
    """Finds the exact answer in a generated answer. Subclasses implement :meth:`_locate`.

    Callers use :meth:`locate` (span or ``None``) or :meth:`locate_with_reason` (also why).
    """

    name: str = "locator"

    def locate(self, answer: str, *, question: str | None = None) -> CharSpan | None:
        """The exact answer's span in ``answer``, or ``None`` if there is none (see module doc)."""
        return self.locate_with_reason(answer, question=question).span

    def locate_with_reason(self, answer: str, *, question: str | None = None) -> LocateResult:
        """Like :meth:`locate`, with the reason and the deciding locator's name."""
        if not isinstance(answer, str):
            raise InvalidInputError(
                f"answer must be a str, got {type(answer).__name__} ({answer!r}); pass ScoredAnswer.answer."
            )
        if question is not None and not isinstance(question, str):
            raise InvalidInputError(f"question must be a str or None, got {type(question).__name__} ({question!r}).")
        if not answer.strip():
            return LocateResult(None, Reason.EMPTY_ANSWER, self.name, "the answer is empty or whitespace only")
        result = self._locate(answer, question)
        if result.span is not None:
            self._check_span(answer, result.span)
        return result

    @abstractmethod
    def _locate(self, answer: str, question: str | None) -> LocateResult:
        """Locate in a non-blank ``answer``; spans must come from :meth:`CharSpan.within`."""

    # -- helpers for subclasses ----------------------------------------------------------
    def _result(self, span: CharSpan | None, detail: str = "", **extra: str | None) -> LocateResult:
        """``FOUND`` with the span, or ``NOT_FOUND`` when it is ``None``."""
        reason = Reason.FOUND if span is not None else Reason.NOT_FOUND
        return LocateResult(span, reason, self.name, detail, **extra)

    def _check_span(self, answer: str, span: CharSpan) -> None:
        # CharSpan checks its own shape; only the answer can tell if it belongs to it.
        if span.end > len(answer) or answer[span.start : span.end] != span.text:
            raise InvalidParameterError(
                f"locator {self.name!r} returned {span!r}, which is not a slice of the answer "
                f"({answer[:60]!r}...); spans must index the text passed to locate()."
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
