"""spill_guard.guard.dropin: the one "guard or rule arguments" check and the drop-in path
(torch model → recorder → scored answer → the guard's Judge), on the embedded model."""

from __future__ import annotations

import math

import pytest
import torch

from spill_guard import SpillGuard
from spill_guard.capture.recorder import GenerationRecorder, RecordedAnswer
from spill_guard.errors import CaptureError, InvalidParameterError
from spill_guard.guard.dropin import DropIn, resolve_guard
from spill_guard.guard.judge import Generated
from spill_guard.policy import Flag

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def torch_parts(spill_model):
    """The embedded model's torch model and tokenizer; a recorder this module installs is removed after it."""
    torch_model, tokenizer = spill_model.loaded.model, spill_model.loaded.tokenizer
    wrapped_before = "generate" in torch_model.__dict__
    yield torch_model, tokenizer
    if not wrapped_before and "generate" in torch_model.__dict__:
        GenerationRecorder.for_model(torch_model, tokenizer).uninstall()


def _never_build() -> SpillGuard:
    raise AssertionError("build() must not run when a guard is given or the arguments are refused")


def test_resolve_guard_returns_the_given_guard_or_builds_one(spill_model):
    guard = SpillGuard(spill_model, threshold=0.0)
    assert resolve_guard(guard, who="Door", build=_never_build) is guard
    assert resolve_guard(None, who="Door", build=lambda: guard, threshold=0.5) is guard


def test_resolve_guard_refuses_a_non_guard_and_names_the_rule_arguments_given(spill_model):
    guard = SpillGuard(spill_model, threshold=0.0)
    with pytest.raises(InvalidParameterError, match=r"^MyDoor: guard must be a spill_guard\.SpillGuard, got 'nope'"):
        resolve_guard("nope", who="MyDoor", build=_never_build)
    with pytest.raises(InvalidParameterError) as refused:
        resolve_guard(guard, who="MyDoor", build=_never_build, threshold=0.5, locator="full",
                      other_rule_args={"metrics": True, "name": None})
    message = str(refused.value)
    assert message.startswith("MyDoor: pass either guard=... or the rule arguments, not both")
    assert "got guard= and threshold=, locator=, metrics=." in message
    assert "SpillGuard(model, threshold=..., locator=..., metrics=...)" in message and "name=" not in message
    with pytest.raises(InvalidParameterError, match=r"got guard= and name=\..*LoadedModel\(\.\.\., name=\.\.\.\)"):
        resolve_guard(guard, who="MyDoor", build=_never_build, other_rule_args={"name": "my-model"})


def test_dropin_keeps_a_guard_on_the_same_torch_model(spill_model, torch_parts):
    torch_model, tokenizer = torch_parts
    guard = SpillGuard(spill_model, threshold=0.0)
    dropin = DropIn(torch_model, tokenizer, who="Door", where="door.model", default_name="unused", guard=guard)
    assert dropin.guard is guard
    assert dropin.recorder is GenerationRecorder.for_model(torch_model, tokenizer)
    assert set(guard.model.betas) <= set(dropin.recorder.betas)
    with pytest.raises(InvalidParameterError, match=r"^Door: pass either guard=.*got guard= and threshold=, name=\."):
        DropIn(torch_model, tokenizer, who="Door", where="door.model", default_name="unused", guard=guard,
               threshold=1.0, name="renamed")


def test_dropin_refuses_a_guard_on_another_torch_model(spill_model):
    import transformers

    config = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    other = transformers.LlamaForCausalLM(config).eval()
    guard = SpillGuard(spill_model, threshold=0.0)
    with pytest.raises(InvalidParameterError, match=r"^Door: guard\.model wraps another torch model than door\.model"):
        DropIn(other, spill_model.tokenizer, who="Door", where="door.model", default_name="unused", guard=guard)
    assert "generate" not in other.__dict__  # refused before its generate was wrapped


def test_dropin_scores_and_judges_a_recorded_answer_as_the_guard_does(torch_parts):
    torch_model, tokenizer = torch_parts
    dropin = DropIn(torch_model, tokenizer, who="Door", where="door.model", default_name="my-smollm", threshold=0.0)
    guard = dropin.guard
    assert guard.model.loaded.model is torch_model and guard.model.loaded.name == "my-smollm"
    assert guard.threshold == 0.0
    assert dropin.recorder is GenerationRecorder.for_model(torch_model, tokenizer)

    ids = guard.prompt(QUESTION).ids
    dropin.recorder.expect("run-1", ids)
    with torch.no_grad():  # the user's own generate call, as a framework makes it
        torch_model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    claim = dropin.recorder.claim("run-1")
    assert claim.answer is not None, claim.reason
    scored = dropin.scored(claim.answer)
    verdict = dropin.judge(scored, QUESTION, strategy="greedy")

    # The guard's own generation and decision of the same prompt: same answer, same score, same verdict.
    reference = guard.model.generate_from_ids([ids], max_new_tokens=8, final_step="auto", stats=guard.capture_stats)[0]
    expected = guard.judge.decide(Generated(reference), question=QUESTION, policy=Flag(), strategy="greedy")
    assert scored.answer_ids == reference.answer_ids and scored.model == "my-smollm"
    assert math.isfinite(verdict.score) and verdict.score == pytest.approx(expected.score, rel=1e-4, abs=1e-4)
    assert (verdict.flagged, verdict.action, verdict.answer) == (expected.flagged, expected.action, expected.answer)
    assert verdict.model == "my-smollm" and verdict.threshold == 0.0 and verdict.scored is scored


def test_a_failed_recording_is_a_capture_error(torch_parts):
    torch_model, tokenizer = torch_parts
    dropin = DropIn(torch_model, tokenizer, who="Door", where="door.model", default_name="my-smollm", threshold=0.0)
    failed = RecordedAnswer(prompt_ids=[1, 2], answer_ids=[3], stopped_on_eos=False, trace=None,
                            failure="the logits hook raised")
    with pytest.raises(CaptureError, match="the logits hook raised"):
        dropin.scored(failed)
