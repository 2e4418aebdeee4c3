"""The z_(T+1) forward step runs only when an answer span could read it (final_step="auto").

Real embedded model. "always" is today's contract (every token's Δ); "auto" must give the
same values everywhere except the one nobody reads, and must not run the extra forward.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from spill_guard import SpillGuard, TokenEvent, Verdict
from spill_guard.capture.final_step import final_step_needed, skip_ids_for, textless_stop_ids
from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import FinalStepNotComputedError, InvalidParameterError

KNOWN = "What is the capital of France?"  # answered in a few tokens, ends on <|im_end|>
LONG = "Write a long story about a dragon."  # runs past a small max_new_tokens


class ForwardCounter:
    """Counts the model's forward passes (one per decoding step, plus any extra step)."""

    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_hook(self._count)

    def _count(self, *args):
        self.calls += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def generate(spill_model, question, mode, max_new_tokens=24):
    with ForwardCounter(spill_model.loaded.model) as counter:
        [ans] = spill_model.generate_from_ids([spill_model.prompt_ids(question)], max_new_tokens=max_new_tokens,
                                              final_step=mode)
    return ans, counter.calls


def test_auto_skips_the_extra_forward_after_a_textless_stop_token(spill_model):
    always, always_calls = generate(spill_model, KNOWN, "always")
    auto, auto_calls = generate(spill_model, KNOWN, "auto")
    assert auto.answer_ids == always.answer_ids and auto.stopped_on_eos and auto.tokens[-1].special
    assert auto_calls == always_calls - 1 == len(auto.answer_ids)  # prefill + T-1 decode steps, no extra
    assert not auto.trace.final_step and always.trace.final_step
    assert math.isnan(auto.spilled_energy[-1]) and math.isfinite(always.spilled_energy[-1])
    # Everything that does not need z_(T+1) is identical, the last token's E and F included.
    assert auto.spilled_energy[:-1] == always.spilled_energy[:-1]
    assert auto.token_energy == always.token_energy and auto.marginal_energy == always.marginal_energy
    assert auto.nonfinite_steps == [] and not auto.trace.nonfinite.any()


def test_auto_still_runs_the_step_when_the_answer_hit_max_new_tokens(spill_model):
    always, always_calls = generate(spill_model, LONG, "always", max_new_tokens=6)
    auto, auto_calls = generate(spill_model, LONG, "auto", max_new_tokens=6)
    assert not auto.stopped_on_eos and len(auto.answer_ids) == 6
    assert auto_calls == always_calls == 7 and auto.trace.final_step
    assert auto.spilled_energy == always.spilled_energy


def test_a_score_that_needs_the_skipped_step_raises_instead_of_dropping_the_token(spill_model):
    auto, _ = generate(spill_model, KNOWN, "auto")
    n = len(auto.answer_ids)
    with pytest.raises(FinalStepNotComputedError, match="final_step='always'"):
        auto.score("spilled_energy:mean", 0, n)  # every token: the range ends on the stop token
    assert auto.score("spilled_energy:mean", 0, n - 1) == pytest.approx(np.mean(auto.spilled_energy[:-1]))
    assert auto.score("token_energy:mean", 0, n) == pytest.approx(np.mean(auto.token_energy))  # needs no z_(T+1)
    # With no range, score() and pooled read the answer's text, which never includes the stop token.
    assert auto.text_range() == (0, n - 1)
    assert auto.score("spilled_energy:mean") == auto.pooled["spilled_energy:mean"] == pytest.approx(
        np.mean(auto.spilled_energy[:-1]))


def test_batch_rows_keep_their_values_when_the_longest_row_ends_on_a_stop_token(spill_model):
    prompts = [spill_model.prompt_ids(q) for q in (KNOWN, "Name a colour.", "What is 2+2?")]
    always = spill_model.generate_from_ids(prompts, max_new_tokens=24)
    auto = spill_model.generate_from_ids(prompts, max_new_tokens=24, final_step="auto")
    longest = max(len(a.answer_ids) for a in auto)
    assert all(a.stopped_on_eos for a in auto)
    assert min(len(a.answer_ids) for a in auto) < longest  # some row ended before the batch did
    for prompt, a, b in zip(prompts, auto, always):
        assert a.answer_ids == b.answer_ids
        # Wherever a row ended on a stop token without text, its z_(T+1) is dropped (a shorter row's came
        # from the batch's next decode step): the row's values are those of the same prompt generated alone.
        assert not a.trace.final_step and math.isnan(a.spilled_energy[-1])
        assert a.spilled_energy[:-1] == pytest.approx(b.spilled_energy[:-1], abs=1e-5)
        [alone] = spill_model.generate_from_ids([prompt], max_new_tokens=24, final_step="auto")
        assert not alone.trace.final_step and alone.answer_ids == a.answer_ids
        assert a.spilled_energy[:-1] == pytest.approx(alone.spilled_energy[:-1], abs=1e-4)


def test_guard_verdicts_and_stream_events_with_the_step_skipped(spill_model):
    guard = SpillGuard(spill_model, threshold=0.0, max_new_tokens=24)
    verdict = guard.ask(KNOWN)
    [core] = spill_model.generate(KNOWN, max_new_tokens=24)
    span = verdict.span
    assert span.token_end < len(core.answer_ids)  # the stop token is outside the span
    assert verdict.score == pytest.approx(core.score("spilled_energy:mean", span.token_start, span.token_end))
    assert verdict.token_scores[-1] is None or math.isnan(verdict.token_scores[-1])
    assert Verdict.model_validate_json(verdict.model_dump_json()).token_scores[-1] is None  # JSON null
    items = list(guard.stream(KNOWN))
    events = [e for e in items if isinstance(e, TokenEvent)]
    assert len(events) == len(core.answer_ids)  # the stop token's event is still sent, with Δ NaN
    assert math.isnan(events[-1].spilled_energy)
    assert events[-1].token_energy == pytest.approx(core.token_energy[-1], abs=1e-5)
    assert items[-1].score == pytest.approx(verdict.score, abs=1e-6)


def test_trace_json_keeps_the_final_step_flag(spill_model):
    auto, _ = generate(spill_model, KNOWN, "auto")
    again = TokenTrace.from_dict(auto.trace.to_dict())
    assert again.final_step is False
    assert TokenTrace.from_dict({**auto.trace.to_dict(), "final_step": True}).final_step  # older files: True
    legacy = auto.trace.to_dict()
    del legacy["final_step"]
    assert TokenTrace.from_dict(legacy).final_step is True


def test_final_step_rules(spill_model):
    tok, stops = spill_model.tokenizer, spill_model.loaded.stop_token_ids
    textless = textless_stop_ids(tok, stops)
    assert textless and textless <= set(tok.all_special_ids)
    assert skip_ids_for("always", tok, stops) == frozenset()
    eos = next(iter(textless))
    # Only rows that reach the last column matter; they need the step unless they ended on a textless stop.
    assert not final_step_needed([eos, 5], [4, 2], [True, False], 4, textless)
    assert final_step_needed([eos, 5], [4, 4], [True, False], 4, textless)
    assert final_step_needed([eos], [4], [True], 4, frozenset())
    with pytest.raises(InvalidParameterError, match="'always'"):
        spill_model.generate_from_ids([[1, 2, 3]], max_new_tokens=2, final_step="sometimes")


def test_guard_final_step_always_keeps_every_delta(spill_model):
    guard = SpillGuard(spill_model, threshold=0.0, max_new_tokens=24, final_step="always")
    verdict = guard.ask(KNOWN)
    [core] = spill_model.generate(KNOWN, max_new_tokens=24)
    assert verdict.scored.trace.final_step and verdict.token_scores == pytest.approx(core.spilled_energy, abs=1e-5)
    with pytest.raises(InvalidParameterError, match="final_step"):
        SpillGuard(spill_model, threshold=0.0, final_step="never")
