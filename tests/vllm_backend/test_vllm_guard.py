"""``SpillGuard`` over the vLLM backend: ask, ask_batch, retry, stream — unchanged guard code."""

from __future__ import annotations

import pytest

from delta_support import assert_same_deltas
from vllm_support import requires_vllm

from spill_guard import SpillGuard
from spill_guard.errors import InvalidParameterError
from spill_guard.guard.verdict import TokenEvent, Verdict
from spill_guard.policy import Flag, Retry
from spill_guard.policy.strategies import Resample

pytestmark = [requires_vllm, pytest.mark.model]


def test_ask_batch_verdicts_equal_the_transformers_guard(vllm_model, reference_model):
    questions = ["What is the capital of France?", "Who wrote Hamlet?"]
    ours = SpillGuard(vllm_model, threshold=1.0, policy=Flag(), max_new_tokens=16).ask_batch(questions)
    theirs = SpillGuard(reference_model, threshold=1.0, policy=Flag(), max_new_tokens=16).ask_batch(questions)
    for a, b in zip(ours, theirs):  # greedy: same tokens, so the same span and score
        assert a.answer == b.answer and a.flagged == b.flagged
        assert abs(a.score - b.score) <= 1e-4
        # Both guards skip z_(T+1) after <|im_end|>; the transformers batch may have it for free (a shorter row).
        assert_same_deltas(a.token_scores, b.token_scores, abs=1e-4,
                           last_is_textless_stop=a.scored.stopped_on_eos and a.scored.tokens[-1].special)


def test_retry_resamples_on_vllm(vllm_model):
    guard = SpillGuard(vllm_model, threshold=-100.0, policy=Retry(attempts=3, strategy=Resample(temperature=0.9)),
                       max_new_tokens=8)  # every answer crosses: all three attempts run
    verdict = guard.ask("Name a colour.")
    assert len(verdict.attempts) == 3 and all(a.strategy.startswith("resample") for a in verdict.attempts[1:])
    assert vllm_model.backend.store_stats()["holding"] == 0


def test_stream_yields_token_events_then_the_verdict(vllm_model):
    items = list(SpillGuard(vllm_model, threshold=1.0, max_new_tokens=8).stream("What is 2 + 2?"))
    assert all(isinstance(i, TokenEvent) for i in items[:-1]) and isinstance(items[-1], Verdict)
    assert [e.spilled_energy for e in items[:-1]] == pytest.approx(items[-1].token_scores, abs=1e-6, nan_ok=True)


def test_early_stop_is_refused_on_vllm(vllm_model):
    from spill_guard.guard import EarlyStop

    with pytest.raises(InvalidParameterError, match="early_stop") as err:  # refused when the guard is built
        SpillGuard(vllm_model, threshold=1.0, early_stop=EarlyStop(5.0), max_new_tokens=4)
    assert "stops_early" in str(err.value) and "'vllm'" in str(err.value)


def test_a_second_opinion_on_vllm_is_reproducible_and_equals_plain_seeded_sampling(vllm_model):
    """Same seed -> same samples -> same verdict on vLLM; the samples are vLLM's own seeded generations."""
    from spill_guard import Cascade, Consistency

    opinion = Consistency(samples=3, temperature=1.0, cascade=Cascade(-100.0, 100.0, 0.5))

    def ask():
        with SpillGuard(vllm_model, threshold=0.0, max_new_tokens=12, second_opinion=opinion) as guard:
            return guard, guard.ask("Who wrote the novel Dracula?")

    guard, first = ask()
    _, again = ask()
    assert first.second_opinion is not None and first.second_opinion.samples == 3
    assert first.model_dump_json(exclude={"record_id"}) == again.model_dump_json(exclude={"record_id"})  # NaN-safe
    prompt = guard.prompt("Who wrote the novel Dracula?")
    plain = [vllm_model.generate_params([prompt.ids], p)[0].answer for p in opinion.sample_params(guard.params)]
    assert [a.answer for a in first.second_opinion.answers] == plain
    compared = opinion.compare(first.original_answer, plain, "Who wrote the novel Dracula?")
    assert first.second_opinion.agreement == compared.agreement
    assert first.score == pytest.approx(opinion.cascade.combine(first.second_opinion.one_pass_risk, compared.agreement))
