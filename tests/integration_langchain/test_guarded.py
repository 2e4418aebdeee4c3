"""Each policy acting in a real LCEL chain (sync, batch, stream, async), plus the callback handler."""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from spill_guard.guard import HallucinationDetected
from spill_guard.policy import Abstain, Flag, Raise, Resample, Retry
from spill_guard_langchain import SpillCallbackHandler, SpillChatModel, SpillGuardedRunnable
from spill_guard_langchain.guarded import NoSpillReportError

pytestmark = pytest.mark.model

PROMPT = ChatPromptTemplate.from_messages([("human", "{q} Answer briefly.")])
Q = {"q": "What is the capital of France?"}


def _chain(spill_model, threshold):
    # threshold=+100 passes every answer, -100 flags every answer: the policy's action is then known.
    return PROMPT | SpillChatModel(spill_model=spill_model, threshold=threshold, max_tokens=10) | StrOutputParser()


def test_flag_passes_text_through_and_logs_flagged(spill_model, tmp_path):
    log = tmp_path / "review.jsonl"
    guarded = SpillGuardedRunnable(_chain(spill_model, -100.0), Flag(), log=str(log), include_verdict=True)
    result = guarded.invoke(Q, {"tags": ["t1"], "metadata": {"user": "ann"}})
    assert result.verdict.action.value == "flagged" and result.output == result.verdict.original_answer
    [record] = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["id"] == result.verdict.record_id and record["tags"] == ["t1"] and record["metadata"]["user"] == "ann"
    assert record["scored"]["trace"]  # the live ScoredAnswer reached the log


def test_abstain_replaces_the_answer_in_the_chain_output_type(spill_model):
    reply = "Not sure."
    assert SpillGuardedRunnable(_chain(spill_model, -100.0), Abstain(reply)).invoke(Q) == reply
    passed = SpillGuardedRunnable(_chain(spill_model, 100.0), Abstain(reply)).invoke(Q)
    assert "Paris" in passed
    message_chain = PROMPT | SpillChatModel(spill_model=spill_model, threshold=-100.0, max_tokens=10)
    message = SpillGuardedRunnable(message_chain, Abstain(reply)).invoke(Q)
    assert message.content == reply and message.response_metadata["spill_guard"]["verdict"]["action"] == "abstained"
    dict_chain = _chain(spill_model, -100.0) | RunnableLambda(lambda text: {"answer": text, "n": 1})
    assert SpillGuardedRunnable(dict_chain, Abstain(reply), output_key="answer").invoke(Q) == {"answer": reply, "n": 1}


def test_retry_resamples_the_whole_chain_then_falls_back(spill_model):
    guarded = SpillGuardedRunnable(_chain(spill_model, -100.0),
                                   Retry(attempts=3, strategy=Resample(0.9), fallback=Abstain("no")), include_verdict=True)
    result = guarded.invoke(Q)
    assert result.output == "no"
    assert [a.strategy for a in result.verdict.attempts] == ["greedy", "resample@0.9", "resample@0.9"]
    assert len({a.answer for a in result.verdict.attempts}) >= 2  # sampling really reached the model
    ok = SpillGuardedRunnable(_chain(spill_model, 100.0), Retry(attempts=3), include_verdict=True).invoke(Q)
    assert len(ok.verdict.attempts) == 1 and ok.verdict.action.value == "passed"


def test_raise_and_async_and_batch(spill_model):
    with pytest.raises(HallucinationDetected) as caught:
        SpillGuardedRunnable(_chain(spill_model, -100.0), Raise()).invoke(Q)
    assert caught.value.verdict.action.value == "raised"
    guarded = SpillGuardedRunnable(_chain(spill_model, -100.0),
                                   Retry(attempts=2, strategy=Resample(0.9), fallback=Abstain("no")), include_verdict=True)
    result = asyncio.run(guarded.ainvoke(Q))
    assert result.output == "no" and [a.strategy for a in result.verdict.attempts] == ["greedy", "resample@0.9"]
    outputs = SpillGuardedRunnable(_chain(spill_model, 100.0), Abstain("no")).batch([Q, {"q": "What is 2 + 2?"}])
    assert "Paris" in outputs[0] and "4" in outputs[1]


def test_stream_flag_passes_chunks_others_judge_first(spill_model):
    chunks = list(SpillGuardedRunnable(_chain(spill_model, 100.0), Flag()).stream(Q))
    assert len(chunks) > 2 and "Paris" in "".join(chunks)
    assert list(SpillGuardedRunnable(_chain(spill_model, -100.0), Abstain("no")).stream(Q)) == ["no"]

    async def collect():
        return [c async for c in SpillGuardedRunnable(_chain(spill_model, 100.0), Flag()).astream(Q)]

    assert "Paris" in "".join(asyncio.run(collect()))


def test_callback_handler_counts_and_logs(spill_model, tmp_path):
    log = tmp_path / "cb.jsonl"
    handler = SpillCallbackHandler(log=str(log))
    flagged_chain, passing_chain = _chain(spill_model, -100.0), _chain(spill_model, 100.0)
    flagged_chain.batch([Q, {"q": "What is 2 + 2?"}], {"callbacks": [handler], "tags": ["batch"], "max_concurrency": 2})
    "".join(passing_chain.stream(Q, {"callbacks": [handler]}))
    counts = handler.counts
    assert (counts["answers"], counts["flagged"], counts["passed"], counts["logged"]) == (3, 2, 1, 2)
    assert counts["streamed_tokens"] > 0 and counts["errors"] == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 2 and all("batch" in r["tags"] for r in records)
    assert {r["question"] for r in records} == {"What is the capital of France? Answer briefly.", "What is 2 + 2? Answer briefly."}


def test_chain_without_spill_model_is_a_clear_error():
    with pytest.raises(NoSpillReportError, match="SpillChatModel"):
        SpillGuardedRunnable(RunnableLambda(lambda x: "text")).invoke("hi")
