"""SpillChatModel on the real embedded model: the report equals what the core computes."""

from __future__ import annotations

import asyncio
import math

import pytest
from spill_guard.models.params import GenerationParams
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.guard import SpillGuard
from spill_guard.models.prompting import chat_prompt_ids, format_question
from spill_guard_langchain import REPORT_KEY, TOKENS_KEY, SpillChatModel, spill_report, verdict_of

pytestmark = pytest.mark.model

QUESTION = "What is the capital of France?"


def _core_answer(spill_model, messages, max_new_tokens=24):
    """The answer as a guard generates it (final_step="auto": a textless stop token's Δ is not computed)."""
    prompt = chat_prompt_ids(spill_model.tokenizer, messages)
    return spill_model.generate_from_ids([prompt], max_new_tokens=max_new_tokens, final_step="auto")[0]


def _deltas(values):
    """Per-token Δ as reports carry them: a Δ that was not computed (NaN) is None."""
    return [None if v is None or math.isnan(v) else pytest.approx(v, abs=1e-5) for v in values]


def test_report_equals_core_for_the_same_prompt(spill_model, chat_model):
    message = chat_model.invoke([HumanMessage(format_question(QUESTION))])
    # The same user turn the core builds for a bare question, generated as the chat model's rule guard
    # generates every answer (its capture and final step), so the library guard gives the reference.
    rule_guard = chat_model.rule_guard
    [first] = rule_guard.generate([rule_guard.prompt(QUESTION)], GenerationParams(max_new_tokens=24))
    core = first.scored
    report = message.response_metadata[REPORT_KEY]
    assert message.content == core.answer
    assert report["token_ids"] == core.answer_ids
    assert report["prompt_tokens"] == len(core.prompt_ids)
    assert report["spilled_energy"] == _deltas(core.spilled_energy)
    assert report["token_energy"] == pytest.approx(core.token_energy, abs=1e-5)
    assert report["marginal_energy"] == pytest.approx(core.marginal_energy, abs=1e-5)
    assert report["pooled"] == pytest.approx(core.pooled, abs=1e-5)
    # The verdict is the guard's verdict on that answer (same packaged calibration, Flag policy).
    expected = SpillGuard(spill_model).decide(core, question=format_question(QUESTION))
    verdict = report["verdict"]
    assert verdict["score"] == pytest.approx(expected.score, abs=1e-5)
    assert verdict["threshold"] == expected.threshold
    assert (verdict["flagged"], verdict["action"], verdict["span"]) == (
        expected.flagged, expected.action.value, expected.span.model_dump())
    assert message.usage_metadata["output_tokens"] == len(core.answer_ids)


def test_multi_turn_conversation_uses_the_chat_template(spill_model, chat_model):
    messages = [SystemMessage("You are terse."), HumanMessage("Name a colour."), AIMessage("Blue."),
                HumanMessage("Name a fruit.")]
    roles = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."},
             {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Name a fruit."}]
    message = chat_model.invoke(messages)
    core = _core_answer(spill_model, roles)
    assert message.content == core.answer
    assert spill_report(message)["spilled_energy"] == _deltas(core.spilled_energy)
    assert spill_report(message)["verdict"]["question"] == "Name a fruit."


def test_stream_carries_per_token_energies_and_ends_with_the_report(chat_model):
    invoked = chat_model.invoke(QUESTION)
    chunks = list(chat_model.stream(QUESTION))
    assert len(chunks) > 3  # token by token, not one final chunk
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.content == invoked.content
    report = spill_report(invoked)
    streamed = merged.response_metadata[TOKENS_KEY]
    assert [t["token_id"] for t in streamed] == report["token_ids"]
    assert [t["spilled_energy"] for t in streamed] == pytest.approx(report["spilled_energy"], abs=1e-5)
    assert merged.response_metadata[REPORT_KEY]["verdict"]["score"] == pytest.approx(report["verdict"]["score"])


def test_async_invoke_and_stream(chat_model):
    async def run():
        message = await chat_model.ainvoke(QUESTION)
        chunks = [c async for c in chat_model.astream(QUESTION)]
        return message, chunks

    message, chunks = asyncio.run(run())
    assert message.content == "".join(c.content for c in chunks)
    assert sum(len(c.response_metadata.get(TOKENS_KEY, [])) for c in chunks) == len(spill_report(message)["token_ids"])


def test_sixteen_concurrent_batch_calls_keep_reports_apart(chat_model):
    questions = [f"What is {a} + {b}?" for a, b in zip(range(2, 18), range(30, 46))]
    small = chat_model.bind(max_tokens=6)
    sequential = {q: small.invoke(q) for q in questions[:2]}
    results = small.batch(questions, config={"max_concurrency": 16})
    for q, message in zip(questions, results):
        report = spill_report(message)
        assert report["verdict"]["question"] == q
        assert report["verdict"]["original_answer"] == message.content
        assert len(report["spilled_energy"]) == len(report["token_ids"]) == message.usage_metadata["output_tokens"]
    for q, message in zip(questions[:2], results[:2]):  # concurrency changes nothing in the numbers
        assert message.content == sequential[q].content
        assert spill_report(message)["spilled_energy"] == pytest.approx(spill_report(sequential[q])["spilled_energy"], abs=1e-4)


def test_bind_and_sampling_options(chat_model):
    short = chat_model.bind(max_tokens=3).invoke(QUESTION)
    assert short.usage_metadata["output_tokens"] == 3
    assert short.response_metadata["finish_reason"] == "length"
    a = chat_model.invoke(QUESTION, temperature=1.0, seed=7)
    b = chat_model.invoke(QUESTION, temperature=1.0, seed=7)
    assert a.content == b.content
    assert verdict_of(a).attempts[0].strategy == "sample"


def test_stop_sequence_cuts_content_like_langchain(chat_model):
    full = chat_model.invoke(QUESTION)
    assert " is " in full.content
    cut = chat_model.invoke(QUESTION, stop=[" is "])
    assert cut.content == full.content.split(" is ")[0]
    assert spill_report(cut)["stop_sequence"] == " is "
    streamed = "".join(c.content for c in chat_model.stream(QUESTION, stop=[" is "]))
    assert streamed == cut.content


def test_clear_errors(chat_model, spill_model):
    with pytest.raises(InvalidInputError, match="tool"):
        chat_model.invoke([HumanMessage("hi"), ToolMessage("42", tool_call_id="x")])
    with pytest.raises(InvalidParameterError, match="unknown generation option"):
        chat_model.invoke("hi", frequency_penalty=1.0)
    with pytest.raises(InvalidParameterError, match="SpillModel"):
        SpillChatModel(spill_model="not a model")
    with pytest.raises(Exception, match="max_new_tokens|Extra inputs"):
        SpillChatModel(spill_model=spill_model, max_new_tokens=5)


def test_from_huggingface_pipeline(spill_model):
    """langchain-huggingface is not installed here: a duck-typed HuggingFacePipeline with the
    same attributes (``.pipeline.model``, ``.pipeline.tokenizer``, ``.model_id``) holds a real model."""

    class _Pipeline:
        model = spill_model.loaded.model
        tokenizer = spill_model.tokenizer

    class _HuggingFacePipeline:
        pipeline = _Pipeline()
        model_id = "my-local-smollm"

    model = SpillChatModel.from_huggingface_pipeline(_HuggingFacePipeline(), threshold=0.0, max_tokens=12)
    message = model.invoke(QUESTION)
    assert message.response_metadata["model_name"] == "my-local-smollm"
    assert spill_report(message)["verdict"]["threshold"] == 0.0
    with pytest.raises(InvalidParameterError, match="pipeline"):
        SpillChatModel.from_huggingface_pipeline(object())
