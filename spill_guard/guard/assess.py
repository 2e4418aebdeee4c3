"""Turn a :class:`~spill_guard.ScoredAnswer` into a policy :class:`Candidate` under a rule.

Locate the exact-answer span, pool the rule's score over its tokens, orient it, compare it
with the threshold. An answer that cannot be scored (no span found, non-finite logits) is
flagged: the guard cannot vouch for it, and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from spill_guard.errors import InvalidInputError, NonFiniteLogitsError
from spill_guard.guard.risk_rule import RiskRule
from spill_guard.guard.verdict import AnswerSpan
from spill_guard.policy.base import Candidate
from spill_guard.report import ScoredAnswer
from spill_guard.spans import SpanLocator, char_span_to_token_range


@dataclass(frozen=True)
class Assessed:
    """What the guard keeps with a candidate (its ``payload``)."""

    scored: ScoredAnswer
    span: AnswerSpan | None
    early_stopped: bool = False


def assess(
    scored: ScoredAnswer,
    question: str,
    rule: RiskRule,
    locator: SpanLocator,
    *,
    strategy: str = "greedy",
    early_stopped: bool = False,
) -> Candidate:
    """Score ``scored`` on its located span and decide whether it crosses ``rule``."""
    ids = tuple(scored.prompt_ids)
    located = locator.locate_with_reason(scored.answer, question=question)
    if located.span is None:
        why = f"no answer span found by locator {rule.locator!r} ({located.reason.value})"
        return Candidate(scored.answer, None, True, strategy, why, Assessed(scored, None, early_stopped), ids)
    start, end = char_span_to_token_range(scored.tokens, located.span)
    span = AnswerSpan(
        start=located.span.start, end=located.span.end, text=located.span.text, token_start=start, token_end=end
    )
    try:
        risk = rule.risk(scored.score(rule.spec, start, end))
    except (NonFiniteLogitsError, InvalidInputError) as exc:  # NaN/+inf logits, or a score undefined on this span
        return Candidate(
            scored.answer, None, True, strategy, f"unscorable: {exc}", Assessed(scored, span, early_stopped), ids
        )
    crossed = rule.crosses(risk)
    sign = ">" if crossed else "<="
    reason = f"risk {risk:.3f} {sign} threshold {rule.threshold:.3f}"
    if early_stopped:  # a cut answer is unfinished: never pass it as if it were whole
        crossed = True
        reason = f"generation stopped early on a risky running score; {reason}"
    return Candidate(scored.answer, risk, crossed, strategy, reason, Assessed(scored, span, early_stopped), ids)
