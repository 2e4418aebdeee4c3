"""Map a character span of the answer to the generated tokens that carry it.

Offsets come from ``ScoredAnswer.tokens`` — the tokens actually generated — never from
re-tokenising the text (SPEC §2). The answer text and the token offsets index the same
string, ``ScoredAnswer.answer``; locate spans in that string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.spans.base import CharSpan, SpanLocator


class TokenLike(Protocol):
    """What the mapping needs from a token (``TokenRecord`` fits)."""

    start: int
    end: int
    special: bool


def char_span_to_token_range(tokens: Sequence[TokenLike], span: CharSpan) -> tuple[int, int]:
    """The token range ``[start, end)`` covering ``span``, for ``ScoredAnswer.score(spec, start, end)``.

    Every token whose character span overlaps ``[span.start, span.end)`` is covered, even
    partially ("Paris" inside the token " Paris" or "Par"+"isian"), and so are the several
    tokens that share one multi-byte character. Special tokens (empty span, no text) never
    overlap anything, so the range never starts or ends on one; a special token *between*
    covered tokens (only possible if generation ran past a stop token) would lie inside the
    range.

    Raises :class:`InvalidInputError` if the span ends past the tokens' text or no token
    overlaps it — both mean it was located in another string than the one the tokens index.
    """
    if not isinstance(span, CharSpan):
        raise InvalidInputError(f"span must be a CharSpan, got {type(span).__name__} ({span!r}).")
    text_end = max((tok.end for tok in tokens), default=0)
    if span.end > text_end:
        raise InvalidInputError(
            f"the span [{span.start}, {span.end}) {span.text!r} ends past the tokens' text, which has "
            f"{text_end} characters; locate the span in ScoredAnswer.answer, the text the tokens index."
        )
    covered = [
        i
        for i, tok in enumerate(tokens)
        if not tok.special and tok.start < tok.end and tok.start < span.end and tok.end > span.start
    ]
    if not covered:
        raise InvalidInputError(
            f"no token overlaps the span [{span.start}, {span.end}) {span.text!r}; the tokens cover "
            f"characters [0, {text_end}). Locate the span in ScoredAnswer.answer, the text the tokens index."
        )
    return covered[0], covered[-1] + 1


def locate_tokens(scored_answer: Any, locator: SpanLocator, question: str | None = None) -> tuple[int, int] | None:
    """Locate the exact answer in ``scored_answer.answer`` and return its token range, or ``None``.

    ``scored_answer`` is a :class:`~spill_guard.ScoredAnswer` (anything with ``.answer`` and
    ``.tokens`` works). Typical use::

        rng = locate_tokens(ans, locator, question)
        risk = ans.score("spilled_energy:min", *rng) if rng else None
    """
    if not isinstance(locator, SpanLocator):
        raise InvalidParameterError(
            f"locator must be a SpanLocator, got {locator!r}; see spill_guard.spans.make_locator."
        )
    span = locator.locate(scored_answer.answer, question=question)
    if span is None:
        return None
    return char_span_to_token_range(scored_answer.tokens, span)
