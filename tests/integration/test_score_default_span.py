"""``ScoredAnswer.score()`` with no range is the guard's number: the default spec over the
answer's text (the ``full`` span), not over every generated token.

Before the fix it pooled over every token, the textless ``<|im_end|>`` included, so it was
not the number a default guard compares with its threshold (and on the guard's own answers,
whose ``z_(T+1)`` step is skipped, it raised ``FinalStepNotComputedError``).
"""

from __future__ import annotations

import pytest

from spill_guard import SpillGuard
from spill_guard.errors import InvalidInputError
from spill_guard.policy import Flag
from spill_guard.report import ScoredAnswer
from spill_guard.scoring.specs import DEFAULT_SPEC

pytestmark = pytest.mark.model

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def guarded(spill_model):
    with SpillGuard(spill_model, threshold=0.0, policy=Flag()) as guard:
        return guard.ask(QUESTION)


def test_score_is_the_guards_verdict_score_on_an_answer_ending_in_im_end(spill_model, guarded):
    ans = guarded.scored
    assert ans.stopped_on_eos and ans.tokens[-1].special and ans.tokens[-1].literal == "<|im_end|>"
    assert ans.score() == guarded.score
    assert ans.pooled[DEFAULT_SPEC.name] == guarded.score
    assert ans.text_range() == (guarded.span.token_start, guarded.span.token_end)
    # The same answer from SpillModel.generate, which computes z_(T+1), gives the same number ...
    [again] = spill_model.generate(QUESTION, max_new_tokens=64)
    assert again.answer_ids == ans.answer_ids
    assert again.score() == pytest.approx(guarded.score, abs=1e-6)
    # ... and it is not the pool over every generated token, the stop token included.
    every = again.score(DEFAULT_SPEC, 0, len(again.answer_ids))
    assert abs(every - again.score()) > 1e-3


def test_explicit_ranges_and_round_trips_keep_their_meaning(guarded):
    ans = guarded.scored
    n = len(ans.answer_ids)
    assert ans.score("token_energy:max", 0, n) == max(ans.token_energy)
    assert ans.score("token_energy:max", start=1) == max(ans.token_energy[1:])
    assert ans.score("token_energy:max", end=2) == max(ans.token_energy[:2])
    back = ScoredAnswer.from_record(ans.to_record())
    assert back.score() == ans.score() and back.pooled == ans.pooled


def test_an_answer_without_text_asks_for_a_range(spill_model):
    stop = spill_model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    [ans] = spill_model.score_ids([spill_model.prompt_ids(QUESTION)], [[stop]])
    assert ans.answer == "" and ans.pooled == {}
    with pytest.raises(InvalidInputError, match="has no text"):
        ans.score()
    assert ans.score("token_energy:mean", 0, 1) == ans.token_energy[0]
