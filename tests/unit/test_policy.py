"""Policies on hand-made candidates: every path, retry bookkeeping, and bad configuration."""

from __future__ import annotations

import math

import pytest

from spill_guard.errors import InvalidParameterError
from spill_guard.policy import (
    DEFAULT_REPLY, Abstain, Action, Candidate, Flag, Raise, Reprompt, Resample, Retry, apply_policy,
)

SAFE = Candidate("Paris.", 0.1, False)
RISKY = Candidate("Lyon.", 2.0, True)


@pytest.mark.parametrize(
    "policy, candidate, action, shown",
    [
        (Flag(), SAFE, Action.PASSED, "Paris."),
        (Flag(), RISKY, Action.FLAGGED, "Lyon."),
        (Abstain("No idea."), SAFE, Action.PASSED, "Paris."),
        (Abstain("No idea."), RISKY, Action.ABSTAINED, "No idea."),
        (Raise(), SAFE, Action.PASSED, "Paris."),
        (Raise(), RISKY, Action.RAISED, "Lyon."),
    ],
)
def test_single_shot_policies(policy, candidate, action, shown):
    decision = apply_policy(policy, candidate)
    assert decision.action is action
    assert decision.shown == shown
    assert decision.chosen is candidate  # the original is always kept
    assert decision.attempts == (candidate,)


def test_abstain_default_reply_and_empty_reply_refused():
    assert Abstain().reply == DEFAULT_REPLY
    with pytest.raises(InvalidParameterError, match="non-empty"):
        Abstain("  ")


def scripted(risks):
    """A regenerate callable returning candidates with the given risks, recording calls."""
    calls = []

    def regenerate(strategy, attempt):
        calls.append((strategy.name, attempt))
        risk = risks[attempt - 2]
        return Candidate(f"answer {attempt}", risk, risk is None or risk > 1.0, strategy.name)

    return regenerate, calls


def test_retry_recovers_and_stops_at_first_safe_answer():
    regenerate, calls = scripted([1.5, 0.4, 0.2])
    decision = Retry(attempts=5, strategy=Resample(0.7)).apply(RISKY, regenerate)
    assert decision.action is Action.PASSED
    assert decision.chosen.answer == "answer 3"
    assert calls == [("resample@0.7", 2), ("resample@0.7", 3)]  # no attempt after the safe one
    assert [c.answer for c in decision.attempts] == ["Lyon.", "answer 2", "answer 3"]


def test_retry_exhausted_keeps_lowest_risk_then_fallback():
    regenerate, calls = scripted([3.0, 1.2])
    decision = Retry(attempts=3, fallback=Abstain("Sorry.")).apply(RISKY, regenerate)
    assert len(calls) == 2
    assert decision.action is Action.ABSTAINED and decision.shown == "Sorry."
    assert decision.chosen.answer == "answer 3" and decision.chosen.risk == 1.2
    decision = Retry(attempts=3, fallback=Flag()).apply(RISKY, scripted([3.0, 1.2])[0])
    assert decision.action is Action.FLAGGED and decision.shown == "answer 3"


def test_retry_prefers_any_scored_answer_to_an_unscorable_one():
    unscorable = Candidate("???", None, True, reason="no span")
    decision = Retry(attempts=2, fallback=Flag()).apply(unscorable, scripted([5.0])[0])
    assert decision.chosen.risk == 5.0
    assert Candidate("x", math.nan, True).sort_key == math.inf


def test_retry_does_not_regenerate_a_safe_first_answer():
    regenerate, calls = scripted([0.0])
    decision = Retry().apply(SAFE, regenerate)
    assert decision.action is Action.PASSED and calls == []


def test_retry_without_regenerate_uses_its_fallback():
    decision = Retry(fallback=Raise()).apply(RISKY, None)
    assert decision.action is Action.RAISED


@pytest.mark.parametrize("bad", [1, 0, 2.5, "3"])
def test_retry_attempts_validated(bad):
    with pytest.raises(InvalidParameterError, match=">= 2"):
        Retry(attempts=bad)


def test_retry_fallback_validated_and_strategies_validated():
    with pytest.raises(InvalidParameterError, match="fallback"):
        Retry(fallback=Retry())
    with pytest.raises(InvalidParameterError, match="temperature"):
        Resample(temperature=0)
    with pytest.raises(InvalidParameterError, match="top_p"):
        Resample(top_p=1.5)
    with pytest.raises(InvalidParameterError, match="instruction"):
        Reprompt("")
    assert Reprompt().name == "reprompt"


def test_apply_policy_rejects_non_policies():
    with pytest.raises(InvalidParameterError, match="Flag"):
        apply_policy("abstain", SAFE)  # type: ignore[arg-type]
