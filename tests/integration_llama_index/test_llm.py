"""SpillLLM on the real embedded model: every LLM method, metadata, logprobs and the verdict."""

from __future__ import annotations

import asyncio
import math

import pytest

from delta_support import assert_same_deltas

pytestmark = pytest.mark.model

Q = "What is the capital of France?"


def _user(text):
    from llama_index.core.llms import ChatMessage

    return [ChatMessage(role="user", content=text)]


def _core_answer(spill_model, question, max_new):
    """The same prompt through the core directly: the numbers the LLM must report."""
    from spill_guard.models.prompting import chat_prompt_ids

    ids = chat_prompt_ids(spill_model.tokenizer, [{"role": "user", "content": question}])
    [scored] = spill_model.generate_from_ids([ids], max_new_tokens=max_new)
    return scored


def test_metadata_is_the_models(llm, spill_model):
    meta = llm.metadata
    assert meta.is_chat_model is True
    assert meta.context_window == spill_model.loaded.context_window == 8192
    assert meta.num_output == llm.max_new_tokens
    assert meta.model_name == spill_model.loaded.name


def test_complete_matches_core_numbers(llm, spill_model):
    from li_support import MAX_NEW

    response = llm.complete(Q)
    core = _core_answer(spill_model, Q, MAX_NEW)
    assert response.text == core.answer
    assert [lp[0].logprob for lp in response.logprobs] == pytest.approx(list(core.trace.log_prob), abs=1e-5)
    assert all(lp[0].logprob <= 0 for lp in response.logprobs)
    report = response.additional_kwargs["spill_guard"]
    span = report["span"]  # the 'full' locator's answer span (text tokens; the end-of-turn token is left out)
    assert core.answer[span["start"]:span["end"]] == span["text"]
    assert report["score"] == pytest.approx(core.score("spilled_energy:mean", span["token_start"], span["token_end"]), abs=1e-5)
    assert_same_deltas(report["token_scores"], core.spilled_energy, abs=1e-5,
                       last_is_textless_stop=core.stopped_on_eos and core.tokens[-1].special)
    assert report["flagged"] is False and report["action"] == "passed"  # threshold NEVER
    assert response.raw.answer_ids == core.answer_ids


def test_chat_and_message_report(llm):
    response = llm.chat(_user(Q))
    assert response.message.role.value == "assistant"
    assert "Paris" in response.message.content
    assert response.message.additional_kwargs["spill_guard"]["score"] == response.additional_kwargs["spill_guard"]["score"]
    assert len(response.logprobs) == len(response.raw.answer_ids)


def test_stream_complete_deltas_add_up_and_last_chunk_has_verdict(llm):
    chunks = list(llm.stream_complete(Q))
    assert len(chunks) >= 3
    assert "".join(c.delta for c in chunks) == chunks[-1].text
    per_token = [c.additional_kwargs["spill_token"] for c in chunks[:-1]]
    final = chunks[-1].additional_kwargs["spill_guard"]
    by_index = {t["index"]: t["spilled_energy"] for t in per_token}
    for i, delta in by_index.items():  # streamed Δ_t are the final report's
        assert delta == pytest.approx(final["token_scores"][i], abs=1e-5, nan_ok=True)
    assert chunks[-1].text == llm.complete(Q).text  # greedy: the same answer as complete()


def test_stream_chat(llm):
    chunks = list(llm.stream_chat(_user(Q)))
    assert "".join(c.delta for c in chunks) == chunks[-1].message.content
    assert chunks[-1].additional_kwargs["spill_guard"]["tokens"]
    assert chunks[-1].logprobs is not None


def test_async_variants_give_the_sync_results(llm):
    sync = llm.complete(Q)

    async def run():
        a = await llm.acomplete(Q)
        c = await llm.achat(_user(Q))
        s = [chunk async for chunk in await llm.astream_complete(Q)]
        sc = [chunk async for chunk in await llm.astream_chat(_user(Q))]
        return a, c, s, sc

    a, c, s, sc = asyncio.run(run())
    assert a.text == c.message.content == s[-1].text == sc[-1].message.content == sync.text
    assert a.additional_kwargs["spill_guard"]["score"] == pytest.approx(sync.additional_kwargs["spill_guard"]["score"])


def test_per_call_options_and_bad_input(llm):
    from llama_index.core.llms import ChatMessage

    from spill_guard.errors import InvalidInputError, InvalidParameterError

    short = llm.complete(Q, max_new_tokens=2)
    assert len(short.raw.answer_ids) <= 2
    with pytest.raises(InvalidParameterError, match="unknown generation option"):
        llm.complete(Q, stop=["\n"])
    with pytest.raises(InvalidInputError, match="tool"):
        llm.chat([ChatMessage(role="tool", content="42")])


def test_sampling_is_seeded(llm):
    a = llm.complete("Name a colour.", do_sample=True, temperature=1.0, top_p=1.0, seed=7)
    b = llm.complete("Name a colour.", do_sample=True, temperature=1.0, top_p=1.0, seed=7)
    assert a.text == b.text
    assert math.isfinite(a.additional_kwargs["spill_guard"]["score"])


def test_guard_and_model_must_agree(spill_model):
    from spill_guard import SpillGuard, SpillModel
    from spill_guard.errors import InvalidParameterError
    from spill_guard_llama_index import SpillLLM

    other = SpillModel(spill_model.loaded)  # a different SpillModel object over the same weights
    with pytest.raises(InvalidParameterError, match="either guard= or model="):
        SpillLLM(SpillGuard(spill_model, threshold=0.0), model=other)
    with pytest.raises(InvalidParameterError, match="SpillGuard"):
        SpillLLM(guard="not a guard")
