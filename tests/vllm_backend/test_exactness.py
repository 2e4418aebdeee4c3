"""E, F, Δ (and entropy, JSD) from the vLLM backend equal a transformers teacher-forced pass.

Same weights, same tokens: vLLM generates (greedy, or sampled with temperature, top-p and a
repetition penalty — applied after the capture, so the captured values stay raw); the
reference re-scores vLLM's own answer tokens in one forward pass. Tolerance 1e-4 (fp32).
"""

from __future__ import annotations

import numpy as np
import pytest

from vllm_support import requires_vllm

pytestmark = [requires_vllm, pytest.mark.model]

QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?", "How many legs does a spider have?"]
TOL = 1e-4


def assert_same(answer, reference):
    assert answer.answer_ids == reference.answer_ids and answer.prompt_ids == reference.prompt_ids
    for field in ("token_energy", "marginal_energy", "spilled_energy"):
        got, want = np.array(getattr(answer, field)), np.array(getattr(reference, field))
        assert got.shape == want.shape and np.max(np.abs(got - want)) <= TOL, (field, got - want)
    a, r = answer.trace, reference.trace
    assert np.max(np.abs(a.log_partition_at(0.5) - r.log_partition_at(0.5))) <= TOL  # every captured β
    assert np.max(np.abs(a.entropy - r.entropy)) <= TOL
    assert np.max(np.abs(a.jsd_next - r.jsd_next)) <= TOL  # includes JSD(p_T, p_(T+1)) via the follow-up


def reference_of(reference_model, answers):
    return reference_model.score_ids([a.prompt_ids for a in answers], [a.answer_ids for a in answers])


def test_greedy_answers_match_teacher_forcing_including_last_token(vllm_model, reference_model):
    answers = vllm_model.generate(QUESTIONS, max_new_tokens=24)
    assert any(a.stopped_on_eos for a in answers)  # the last token's Δ is then the stop token's
    for answer, reference in zip(answers, reference_of(reference_model, answers)):
        assert_same(answer, reference)


def test_greedy_answers_equal_the_transformers_backend_generation(vllm_model, reference_model):
    """Greedy decoding picks the same tokens on both backends, so the whole contract matches."""
    [ours] = vllm_model.generate(QUESTIONS[:1], max_new_tokens=16)
    [theirs] = reference_model.generate(QUESTIONS[:1], max_new_tokens=16)
    assert ours.answer == theirs.answer
    assert_same(ours, theirs)


def test_sampled_answers_with_penalty_match_teacher_forcing(vllm_model, reference_model):
    answers = vllm_model.generate(QUESTIONS, max_new_tokens=24, do_sample=True, temperature=0.9, top_p=0.9,
                                  repetition_penalty=1.3, seed=7)
    for answer, reference in zip(answers, reference_of(reference_model, answers)):
        assert_same(answer, reference)


def test_energy_stats_skip_entropy_but_keep_energies(vllm_model, reference_model):
    [answer] = vllm_model.generate(QUESTIONS[:1], max_new_tokens=12, stats="energy")
    assert not answer.trace.distribution_stats and np.isnan(answer.trace.entropy).all()
    [reference] = reference_of(reference_model, [answer])
    assert np.max(np.abs(np.array(answer.spilled_energy) - np.array(reference.spilled_energy))) <= TOL


def test_answer_cut_by_max_new_tokens_still_gets_its_last_delta(vllm_model, reference_model):
    [answer] = vllm_model.generate(["Describe the history of Rome in detail."], max_new_tokens=5)
    assert not answer.stopped_on_eos and len(answer.answer_ids) == 5
    [reference] = reference_of(reference_model, [answer])
    assert abs(answer.spilled_energy[-1] - reference.spilled_energy[-1]) <= TOL


def test_length_cut_answers_take_z_next_from_their_own_request_not_a_follow_up(vllm_model, reference_model):
    # The answer request asks for one token more than max_new_tokens: the step sampling it computes
    # z_(T+1), so no follow-up request (a second engine round re-prefilling the answer) is sent.
    engine_calls = []
    generate = vllm_model.backend.llm.generate

    def counting_generate(prompts, *args, **kwargs):
        engine_calls.append(len(prompts))
        return generate(prompts, *args, **kwargs)

    vllm_model.backend.llm.generate = counting_generate
    try:
        answers = vllm_model.generate(["Describe the history of Rome in detail.", "Name ten rivers."],
                                      max_new_tokens=6, stats="full")
    finally:
        del vllm_model.backend.llm.generate
    assert engine_calls == [2]
    for answer, reference in zip(answers, reference_of(reference_model, answers)):
        assert len(answer.answer_ids) == 6 and not answer.stopped_on_eos and answer.trace.final_step
        assert_same(answer, reference)  # the extra sampled token is dropped; last Δ and JSD still exact


def test_store_holds_nothing_after_calls(vllm_model):
    vllm_model.generate(QUESTIONS[:2], max_new_tokens=8)
    assert vllm_model.backend.store_stats()["holding"] == 0


def _sent_params(vllm_model, call):
    """Run ``call()`` and return the SamplingParams of every request it sent to the engine."""
    sent = []
    generate = vllm_model.backend.llm.generate

    def recording_generate(prompts, params, *args, **kwargs):
        sent.extend(params)
        return generate(prompts, params, *args, **kwargs)

    vllm_model.backend.llm.generate = recording_generate
    try:
        return call(), sent
    finally:
        del vllm_model.backend.llm.generate


def test_greedy_answers_read_the_chosen_logit_from_the_row_max_without_vllm_logprobs(vllm_model, reference_model):
    # Greedy without penalties samples the raw argmax, so z_t[x_t] = max_v z_t (captured); vLLM's
    # logprob path (log-softmax, rank count, a Logprob object per token) is not asked for at all.
    answers, sent = _sent_params(vllm_model, lambda: vllm_model.generate(QUESTIONS, max_new_tokens=12,
                                                                         final_step="always"))
    assert sent and all(p.logprobs is None and p.extra_args["spill_guard"]["chosen"] == "max" for p in sent)
    for answer, reference in zip(answers, reference_of(reference_model, answers)):
        assert_same(answer, reference)


@pytest.mark.parametrize("penalty", [{"repetition_penalty": 1.3}, {"presence_penalty": 0.5},
                                     {"frequency_penalty": 0.5}])
def test_greedy_answers_under_a_penalty_use_raw_logprobs_and_stay_exact(vllm_model, reference_model, penalty):
    # A penalty can move the argmax away from the raw maximum: the chosen logit must come from the
    # sampled token's raw logprob instead.
    answers, sent = _sent_params(vllm_model, lambda: vllm_model.generate(QUESTIONS[:2], max_new_tokens=12, **penalty))
    first = sent[0]
    assert first.logprobs == 0 and first.extra_args["spill_guard"]["chosen"] == "logprob"
    for answer, reference in zip(answers, reference_of(reference_model, answers)):
        assert_same(answer, reference)
