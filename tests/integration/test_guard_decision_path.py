"""The library guard on the one decision path (real embedded model): retries made by the strategy,
prompt ids on every attempt, the one seed rule, HallucinationDetected's fields."""

from __future__ import annotations

import pytest

from spill_guard import HallucinationDetected, Raise, Reprompt, Resample, Retry, SpillGuard
from spill_guard.models.params import GenerationParams

pytestmark = pytest.mark.model

QUESTION = "What is the capital of the Kouilou region?"


def _guard(spill_model, policy):
    return SpillGuard(spill_model, threshold=-1e9, policy=policy, max_new_tokens=12)  # everything is flagged


def test_reprompt_adds_the_instruction_to_the_question_turn(spill_model):
    v = _guard(spill_model, Retry(attempts=2, strategy=Reprompt("Reply with the city name only."))).ask(QUESTION)
    first, second = v.attempts
    guard_prompt = spill_model.tokenizer.decode(second.prompt_ids)
    assert first.prompt_ids == spill_model.prompt_ids(QUESTION)
    assert "Kouilou region? Answer briefly. Reply with the city name only." in guard_prompt
    assert second.strategy == "reprompt"
    [expected] = spill_model.generate_from_ids([second.prompt_ids], max_new_tokens=12)
    assert second.answer == expected.answer


def test_resample_attempts_use_the_one_seed_rule_and_repeat(spill_model):
    policy = Retry(attempts=3, strategy=Resample(temperature=0.9, top_p=0.95, seed=40))
    v1 = _guard(spill_model, policy).ask(QUESTION)
    v2 = _guard(spill_model, policy).ask(QUESTION)  # a new guard: the same retries (no per-guard counter)
    assert [a.answer for a in v1.attempts] == [a.answer for a in v2.attempts]
    for k, attempt in enumerate(v1.attempts[1:], start=2):
        [expected] = spill_model.generate_from_ids([attempt.prompt_ids], max_new_tokens=12, do_sample=True,
                                                   temperature=0.9, top_p=0.95, seed=40 + k)
        assert attempt.answer == expected.answer, f"attempt {k} is not seeded 40 + {k}"


def test_hallucination_detected_carries_the_verdict_as_fields(spill_model):
    guard = _guard(spill_model, Raise())
    with pytest.raises(HallucinationDetected) as err:
        guard.ask_batch([QUESTION, "What is 2 + 2?"])
    exc = err.value
    assert exc.verdict is exc.verdicts[0] and len(exc.verdicts) == 2
    assert (exc.question, exc.answer, exc.score, exc.threshold, exc.spec) == (
        QUESTION, exc.verdict.original_answer, exc.verdict.score, -1e9, exc.verdict.spec)
    assert exc.summary.startswith(f"answer to {QUESTION!r} flagged as a likely hallucination")
    assert str(exc).startswith(exc.summary)


def test_guard_params_are_frozen_generation_params(spill_model):
    guard = SpillGuard(spill_model, threshold=0.0, max_new_tokens=7)
    assert guard.params == GenerationParams(max_new_tokens=7)


def test_a_new_rule_takes_effect_on_the_next_answer(spill_model):
    """``guard.rule`` is the judge's rule: replacing it (a recalibrated threshold) changes the next verdict."""
    import dataclasses

    from spill_guard.errors import InvalidParameterError

    guard = SpillGuard(spill_model, threshold=100.0, max_new_tokens=6)
    assert guard.ask("What is the capital of France?").action.value == "passed"
    guard.rule = dataclasses.replace(guard.rule, threshold=-100.0)
    assert guard.judge.rule is guard.rule and guard.threshold == -100.0
    assert guard.ask("What is the capital of France?").action.value == "flagged"
    with pytest.raises(InvalidParameterError, match="must be a RiskRule"):
        guard.rule = 0.5
    guard.rule = dataclasses.replace(guard.rule, direction=-1)  # a rule oriented the other way ...
    guard.recalibrate(threshold=3.0)  # ... keeps its orientation when only the threshold moves
    assert (guard.rule.direction, guard.rule.threshold, guard.rule.version) == (-1, 3.0, "threshold:3.0")
    with pytest.raises(InvalidParameterError, match="a calibration or a threshold"):
        guard.recalibrate()
