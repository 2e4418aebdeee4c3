"""Answer-span locators: find the exact answer inside a long generation, then its tokens.

The paper scores only the tokens of the exact answer (SPEC §2). A locator finds it as a
character span of ``ScoredAnswer.answer``; :func:`locate_tokens` turns that into the token
range that ``ScoredAnswer.score(spec, start, end)`` pools over.

    >>> from spill_guard.spans import make_locator, locate_tokens
    >>> locator = make_locator("quoted+answer_is+strip_filler")   # cheap, no model call
    >>> locator.locate("Sure! The capital of Italy is Rome.").text
    'Rome'

The paper's own method is :class:`LLMExtractorLocator` (a second, few-shot model call).
"""

from __future__ import annotations

from spill_guard.errors import InvalidParameterError
from spill_guard.spans.base import CharSpan, LocateResult, Reason, SpanLocator
from spill_guard.spans.cheap import (
    AnswerIsLocator,
    CallableLocator,
    FirstOfLocator,
    NumericLocator,
    QuotedLocator,
    StripFillerLocator,
    WholeAnswerLocator,
)
from spill_guard.spans.llm_extractor import (
    DEFAULT_FEW_SHOT,
    FewShotExample,
    LLMExtractorLocator,
    build_prompt,
    parse_completion,
    plain_completions,
)
from spill_guard.spans.matching import find_all_answers, find_answer
from spill_guard.spans.tokens import char_span_to_token_range, locate_tokens

#: The built-in cheap locators by name (classes; each builds with no arguments).
LOCATORS: dict[str, type[SpanLocator]] = {
    cls.name: cls for cls in (NumericLocator, QuotedLocator, AnswerIsLocator, StripFillerLocator, WholeAnswerLocator)
}


def make_locator(name: str) -> SpanLocator:
    """Build a cheap locator by name; ``"a+b+c"`` builds ``FirstOfLocator([a, b, c])``.

    Names: ``numeric``, ``quoted``, ``answer_is``, ``strip_filler``, ``full`` (the whole answer).
    The LLM extractor needs a model, so it is built directly:
    ``LLMExtractorLocator(spill_model)``.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError(
            f"locator name must be a non-empty string, got {name!r}; choose from {sorted(LOCATORS)}."
        )
    parts = [p.strip() for p in name.split("+")]
    unknown = [p for p in parts if p not in LOCATORS]
    if unknown:
        raise InvalidParameterError(
            f"unknown locator {unknown[0]!r} in {name!r}; choose from {sorted(LOCATORS)}, joined with '+' to chain."
        )
    built = [LOCATORS[p]() for p in parts]
    return built[0] if len(built) == 1 else FirstOfLocator(built)


__all__ = [
    "AnswerIsLocator",
    "CallableLocator",
    "CharSpan",
    "DEFAULT_FEW_SHOT",
    "FewShotExample",
    "FirstOfLocator",
    "LLMExtractorLocator",
    "LOCATORS",
    "LocateResult",
    "NumericLocator",
    "QuotedLocator",
    "Reason",
    "SpanLocator",
    "StripFillerLocator",
    "WholeAnswerLocator",
    "build_prompt",
    "char_span_to_token_range",
    "find_all_answers",
    "find_answer",
    "locate_tokens",
    "make_locator",
    "parse_completion",
    "plain_completions",
]
