"""Retries on a drop-in model: the recorder's substitution of a row, on the embedded model.

A framework (a transformers pipeline, HuggingFaceLLM) calls the torch model's ``generate`` with
its own prompt ids, greedily. Inside a retry attempt the recorder feeds the attempt's prompt ids
with the attempt's sampling instead, records the trace against the ids fed, and hands the
framework its own prompt ids followed by the new tokens. The row must be what the core
generates for those ids and params (``SpillModel.generate_params``): same tokens, same values.
"""

from __future__ import annotations

import threading

import pytest
import torch

from spill_guard import SpillGuard
from spill_guard.capture.recorder import GenerationRecorder, Substitution
from spill_guard.errors import CaptureError
from spill_guard.guard.dropin import DropIn, substitution_for
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import Prompt, chat_prompt_ids
from spill_guard.policy import Reprompt, Resample
from spill_guard.policy.attempt_scope import attempt_scope
from spill_guard.report import build_scored_answer

MAX_NEW = 24
TOL = 1e-4
ITALY = "What is the capital of Italy?"
ZUBROWKA = "What is the capital of Zubrowka?"
INSTRUCTION = "Reply with the city name only."


@pytest.fixture(scope="module")
def parts(spill_model, torch_single_thread):
    """The embedded model's torch model and tokenizer, with its recorder (removed after the module if it
    was installed here)."""
    torch_model, tokenizer = spill_model.loaded.model, spill_model.loaded.tokenizer
    wrapped_before = "generate" in torch_model.__dict__
    recorder = GenerationRecorder.for_model(torch_model, tokenizer)
    yield torch_model, tokenizer, recorder
    if not wrapped_before:
        recorder.uninstall()


@pytest.fixture
def planned(parts):
    """``planned(planner)``: registers a planner on the recorder for one test."""
    stops = []

    def register(planner):
        stops.append(parts[2].plan(planner))

    yield register
    for stop in stops:
        stop()


def ids_of(tokenizer, question, instruction=None):
    content = question if instruction is None else f"{question} {instruction}"
    return chat_prompt_ids(tokenizer, [{"role": "user", "content": content}])


def framework_generate(torch_model, prompts, pad_token_id):
    """What a framework does: left-padded prompts, greedy, its own budget; returns the sequences."""
    longest = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_token_id] * (longest - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    return torch_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW, do_sample=False,
                                pad_token_id=pad_token_id)


def scored_row(spill_model, row):
    return build_scored_answer(tokenizer=spill_model.tokenizer, model_name=spill_model.loaded.name,
                               prompt_ids=row.prompt_ids, trace=row.trace, stopped_on_eos=row.stopped_on_eos,
                               beta=spill_model.beta)


def assert_same_answer(got, want):
    assert got.prompt_ids == want.prompt_ids
    assert got.answer_ids == want.answer_ids, (got.answer, want.answer)
    assert got.stopped_on_eos == want.stopped_on_eos
    for name in ("token_energy", "marginal_energy", "spilled_energy"):
        a, b = getattr(got, name), getattr(want, name)
        assert len(a) == len(b), name
        off = [(i, x, y) for i, (x, y) in enumerate(zip(a, b))
               if (x is None) != (y is None) or (x is not None and abs(x - y) > TOL)]
        assert not off, f"{name} differs (index, row, core): {off[:3]}"


def run_expected(parts, key, asked):
    """Expect ``asked`` in this thread, generate it as a framework would, claim the row."""
    torch_model, tokenizer, recorder = parts
    recorder.expect(key, asked)
    try:
        sequences = framework_generate(torch_model, [asked], tokenizer.pad_token_id)
    except BaseException:
        recorder.forget(key)
        raise
    claim = recorder.claim(key)
    assert claim.answer is not None, claim.reason
    return sequences, claim.answer


def test_a_reprompted_row_is_the_core_answer_to_the_reprompted_ids(spill_model, parts, planned):
    tokenizer = parts[1]
    asked, reprompted = ids_of(tokenizer, ITALY), ids_of(tokenizer, ITALY, INSTRUCTION)
    params = GenerationParams(max_new_tokens=MAX_NEW)
    planned(lambda ids, budget: substitution_for(reprompted, params) if ids == asked else None)
    sequences, row = run_expected(parts, "reprompt", asked)
    [core] = spill_model.generate_params([reprompted], params)

    assert row.substituted and row.asked_ids == asked and row.prompt_ids == reprompted
    assert_same_answer(scored_row(spill_model, row), core)
    # The framework gets its own prompt back, then the attempt's tokens (its prompt stripping still works).
    assert sequences[0, :len(asked)].tolist() == asked
    assert sequences[0, len(asked):].tolist()[:len(core.answer_ids)] == core.answer_ids


def test_a_resampled_row_is_the_core_seeded_sample(spill_model, parts, planned):
    tokenizer = parts[1]
    asked = ids_of(tokenizer, ZUBROWKA)
    params = GenerationParams(max_new_tokens=MAX_NEW).sampled(0.7, 0.95, 2)
    planned(lambda ids, budget: substitution_for(None, params) if ids == asked else None)
    sequences, row = run_expected(parts, "resample", asked)
    [core] = spill_model.generate_params([asked], params)
    [greedy] = spill_model.generate_params([asked], GenerationParams(max_new_tokens=MAX_NEW))

    assert core.answer_ids != greedy.answer_ids, "seed 2 must sample another answer than greedy (pick another seed)"
    assert row.substituted and row.prompt_ids == asked
    assert_same_answer(scored_row(spill_model, row), core)
    assert sequences[0, :len(asked)].tolist() == asked


def test_the_dropin_regenerates_an_announced_prompt_as_the_current_attempt(spill_model, parts):
    torch_model, tokenizer, _ = parts
    dropin = DropIn(torch_model, tokenizer, who="Door", where="door.model", default_name="unused",
                    guard=SpillGuard(spill_model, threshold=0.0))
    prompt = Prompt.for_chat(tokenizer, [{"role": "user", "content": ITALY}])
    try:
        rows = {}
        for label, scope in (("first", None), ("reprompt", Reprompt(INSTRUCTION)), ("resample", Resample(0.7))):
            if scope is None:
                dropin.expect(label, prompt, prompt.ids)
                framework_generate(torch_model, [prompt.ids], tokenizer.pad_token_id)
            else:  # the framework announces and generates inside the attempt (e.g. a chain re-run)
                with attempt_scope(scope, 2):
                    dropin.expect(label, prompt, prompt.ids)
                    framework_generate(torch_model, [prompt.ids], tokenizer.pad_token_id)
            claim = dropin.claim(label)
            assert claim.answer is not None, claim.reason
            rows[label] = dropin.scored(claim.answer)
    finally:
        dropin.close()
    params = GenerationParams(max_new_tokens=MAX_NEW)
    reprompt_prompt, reprompt_params = Reprompt(INSTRUCTION).next_attempt(prompt, params, 2)
    resample_prompt, resample_params = Resample(0.7).next_attempt(prompt, params, 2)
    assert resample_params.seed == 2 and reprompt_prompt.ids == ids_of(tokenizer, ITALY, INSTRUCTION)
    core = {"first": spill_model.generate_params([prompt.ids], params)[0],
            "reprompt": spill_model.generate_params([reprompt_prompt.ids], reprompt_params)[0],
            "resample": spill_model.generate_params([resample_prompt.ids], resample_params)[0]}
    for label in core:
        assert_same_answer(rows[label], core[label])


def test_an_announcement_made_in_an_attempt_takes_no_row_generated_outside_it(spill_model, parts):
    """A generate call in a plain thread does not see the attempt: its greedy row is not the attempt's."""
    torch_model, tokenizer, _ = parts
    dropin = DropIn(torch_model, tokenizer, who="Door", where="door.model", default_name="unused",
                    guard=SpillGuard(spill_model, threshold=0.0))
    prompt = Prompt.for_chat(tokenizer, [{"role": "user", "content": ITALY}])
    try:
        with attempt_scope(Reprompt(INSTRUCTION), 2):
            dropin.expect("elsewhere", prompt, prompt.ids)
            worker = threading.Thread(target=framework_generate,
                                      args=(torch_model, [prompt.ids], tokenizer.pad_token_id))
            worker.start()
            worker.join()
            claim = dropin.claim("elsewhere")
    finally:
        dropin.close()
    assert claim.answer is None
    assert "reprompt attempt's generate call ran outside the attempt's context" in claim.reason


def test_a_substitution_in_a_batched_call_is_refused(parts, planned):
    torch_model, tokenizer, recorder = parts
    first, second = ids_of(tokenizer, ITALY), ids_of(tokenizer, ZUBROWKA)
    planned(lambda ids, budget: Substitution(do_sample=False) if ids == first else None)
    recorder.expect("batched", first)
    try:
        with pytest.raises(CaptureError, match=r"this call batches 2 rows \(row\(s\) \[0\] belong to the attempt\)"):
            framework_generate(torch_model, [first, second], tokenizer.pad_token_id)
    finally:
        recorder.forget("batched")


def test_the_planner_gets_the_calls_budget(parts, planned):
    torch_model, tokenizer, recorder = parts
    asked = ids_of(tokenizer, ITALY)
    seen = []
    planned(lambda ids, budget: seen.append((ids == asked, budget)))
    run_expected(parts, "budget", asked)
    assert seen == [(True, MAX_NEW)]
