"""Guarded query and chat engines over a real VectorStoreIndex: each policy acts, source nodes
and the verdict survive, concurrent and async queries keep their reports apart."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from li_support import ALWAYS, NEVER

pytestmark = pytest.mark.model

Q_CITY = "In which city was Acme Lumen Robotics founded?"
Q_STAFF = "How many people did Acme Lumen Robotics employ in 2024?"


def guarded(index, make_llm, threshold, policy=None, **guard_kwargs):
    from spill_guard_llama_index import GuardedQueryEngine

    llm = make_llm(threshold=threshold, **guard_kwargs)
    return GuardedQueryEngine(index.as_query_engine(llm=llm, similarity_top_k=1), llm, policy=policy)


def test_flag_passes_answer_and_keeps_sources(index, make_llm, captured_events):
    from spill_guard import Flag

    engine = guarded(index, make_llm, ALWAYS, Flag())
    response = engine.query(Q_CITY)
    verdict = response.metadata["spill_guard"]
    assert verdict["action"] == "flagged" and verdict["flagged"] is True
    assert str(response) == verdict["original_answer"] == captured_events[-1].answer
    assert verdict["question"] == Q_CITY  # the user's query, not the whole RAG prompt
    assert response.source_nodes and "Tampere" in response.source_nodes[0].node.get_content()
    assert verdict["context"] == response.source_nodes[0].node.get_content()
    assert verdict["score"] == pytest.approx(captured_events[-1].score)


def test_pass_below_threshold(index, make_llm):
    response = guarded(index, make_llm, NEVER).query(Q_CITY)
    assert response.metadata["spill_guard"]["action"] == "passed"
    assert "Tampere" in str(response)


def test_abstain_shows_the_reply(index, make_llm):
    from spill_guard import Abstain

    response = guarded(index, make_llm, ALWAYS, Abstain(reply="Not sure.")).query(Q_CITY)
    verdict = response.metadata["spill_guard"]
    assert str(response) == "Not sure." and verdict["action"] == "abstained"
    assert verdict["original_answer"] and verdict["original_answer"] != "Not sure."
    assert response.source_nodes


def test_retry_resample_then_fallback(index, make_llm, captured_events):
    from spill_guard import Abstain, Resample, Retry

    policy = Retry(attempts=3, strategy=Resample(temperature=1.0), fallback=Abstain())
    response = guarded(index, make_llm, ALWAYS, policy).query(Q_CITY)
    verdict = response.metadata["spill_guard"]
    assert [a["strategy"] for a in verdict["attempts"]] == ["greedy", "resample@1", "resample@1"]
    assert verdict["action"] == "abstained"  # always flagged: the fallback decides
    assert len(captured_events) == 3  # each attempt was scored and announced
    best = min(verdict["attempts"], key=lambda a: a["score"])
    assert verdict["original_answer"] == best["answer"]


def test_retry_reprompt_can_pass(index, make_llm, spill_model):
    from spill_guard import Reprompt, Retry, SpillGuard
    from spill_guard_llama_index import GuardedQueryEngine, SpillLLM

    # Threshold between the greedy answer's risk and ... whatever the reprompted answer scores:
    # set it just below the first answer so that one is flagged, and check the loop's bookkeeping.
    first = guarded(index, make_llm, NEVER).query(Q_CITY).metadata["spill_guard"]["score"]
    llm = SpillLLM(SpillGuard(spill_model, threshold=first - 1e-6, max_new_tokens=12))
    engine = GuardedQueryEngine(index.as_query_engine(llm=llm, similarity_top_k=1), llm,
                                policy=Retry(attempts=2, strategy=Reprompt()))
    verdict = engine.query(Q_CITY).metadata["spill_guard"]
    assert [a["strategy"] for a in verdict["attempts"]] == ["greedy", "reprompt"]
    assert verdict["attempts"][0]["score"] == pytest.approx(first, abs=1e-5)
    second = verdict["attempts"][1]
    assert verdict["action"] == ("passed" if not second["flagged"] else "abstained")


def test_raise(index, make_llm, tmp_path):
    from spill_guard import HallucinationDetected, Raise

    log = tmp_path / "engine.jsonl"
    engine = guarded(index, make_llm, ALWAYS, Raise(), log=str(log))
    with pytest.raises(HallucinationDetected) as caught:
        engine.query(Q_CITY)
    assert caught.value.verdict.question == Q_CITY
    [record] = [json.loads(line) for line in log.read_text().splitlines()]  # logged before raising
    assert record["action"] == "raised"


def test_other_llm_is_scored_teacher_forced(index, make_llm, spill_model):
    from llama_index.core.llms import MockLLM

    from spill_guard import Abstain, Retry, SpillGuard
    from spill_guard_llama_index import GuardedQueryEngine

    guard = SpillGuard(spill_model, threshold=ALWAYS)
    engine = GuardedQueryEngine(index.as_query_engine(llm=MockLLM(max_tokens=8), similarity_top_k=1),
                                guard=guard, policy=Retry(attempts=2, fallback=Abstain()))
    response = engine.query(Q_CITY)
    verdict = response.metadata["spill_guard"]
    assert verdict["action"] == "abstained" and len(verdict["attempts"]) == 1  # nothing to retry with
    expected = spill_model.score_answer(Q_CITY, verdict["original_answer"], context=verdict["context"])
    span = verdict["span"]
    assert verdict["score"] == pytest.approx(expected.score("spilled_energy:mean", span["token_start"], span["token_end"]), abs=1e-4)


@pytest.fixture(scope="module")
def sequential(index, make_llm):
    """Each question answered alone (greedy): what concurrent runs must reproduce exactly."""
    engine = guarded(index, make_llm, NEVER)
    out = {q: engine.query(q).metadata["spill_guard"] for q in (Q_CITY, Q_STAFF)}
    assert out[Q_CITY]["original_answer"] != out[Q_STAFF]["original_answer"]
    return out


def test_concurrent_queries_keep_reports_apart(index, make_llm, sequential):
    engine = guarded(index, make_llm, NEVER)
    questions = [Q_CITY, Q_STAFF, Q_CITY, Q_STAFF]
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(engine.query, questions))
    for question, response in zip(questions, responses):
        verdict = response.metadata["spill_guard"]
        alone = sequential[question]
        assert verdict["question"] == question and str(response) == verdict["original_answer"]
        assert verdict["original_answer"] == alone["original_answer"]
        assert verdict["score"] == pytest.approx(alone["score"], abs=1e-5)
        assert verdict["token_scores"] == pytest.approx(alone["token_scores"], abs=1e-5)


def test_async_queries_keep_reports_apart(index, make_llm, sequential):
    from spill_guard import Abstain

    engine = guarded(index, make_llm, ALWAYS, Abstain())

    async def run():
        return await asyncio.gather(engine.aquery(Q_CITY), engine.aquery(Q_STAFF))

    city, staff = asyncio.run(run())
    assert city.metadata["spill_guard"]["question"] == Q_CITY and staff.metadata["spill_guard"]["question"] == Q_STAFF
    for response, question in ((city, Q_CITY), (staff, Q_STAFF)):
        verdict, alone = response.metadata["spill_guard"], sequential[question]
        assert verdict["original_answer"] == alone["original_answer"]
        assert verdict["score"] == pytest.approx(alone["score"], abs=1e-5)
    assert str(city) == str(staff) == Abstain().reply


def test_streaming_inner_engine_is_refused(index, make_llm):
    from spill_guard_llama_index import GuardedQueryEngine, GuardedStreamingError

    llm = make_llm()
    engine = GuardedQueryEngine(index.as_query_engine(llm=llm, streaming=True, similarity_top_k=1), llm)
    with pytest.raises(GuardedStreamingError, match="streaming=False"):
        engine.query(Q_CITY)


def test_chat_engine_abstains_and_rewrites_memory(index, make_llm):
    from spill_guard import Abstain
    from spill_guard_llama_index import GuardedChatEngine

    llm = make_llm(threshold=ALWAYS)
    inner = index.as_chat_engine(chat_mode="context", llm=llm, similarity_top_k=1)
    engine = GuardedChatEngine(inner, llm, policy=Abstain(reply="Not sure."))
    response = engine.chat(Q_CITY)
    assert str(response) == "Not sure." and response.source_nodes
    assert response.metadata["spill_guard"]["action"] == "abstained"
    history = engine.chat_history
    assert history[-1].role.value == "assistant" and history[-1].content == "Not sure."
    assert history[-2].content == Q_CITY
    from spill_guard_llama_index import GuardedStreamingError

    with pytest.raises(GuardedStreamingError, match="cannot stream"):
        engine.stream_chat(Q_STAFF)
    with pytest.raises(GuardedStreamingError, match="cannot stream"):
        asyncio.run(engine.astream_chat(Q_STAFF))
    flagged = asyncio.run(GuardedChatEngine(inner, llm).achat(Q_STAFF))  # guard's own policy: Flag
    assert flagged.metadata["spill_guard"]["action"] == "flagged"
    assert str(flagged) == flagged.metadata["spill_guard"]["original_answer"]


def test_second_opinion_samples_are_one_batched_call_each_recorded(index, make_llm, captured_events, spill_model):
    """A guarded engine's second opinion draws a question's K samples in one generate call of K rows (the
    embedded model's backend seeds each row), each sample announced as a generation (that they equal the
    library's one-by-one draws is tests/parity/test_second_opinion_parity.py's)."""
    from spill_guard import Cascade, Consistency, Flag

    consistency = Consistency(samples=3, temperature=1.0, cascade=Cascade(-1e9, 1e9, 0.5))
    assert make_llm(threshold=NEVER, second_opinion=consistency).rows_in_one_call
    engine = guarded(index, make_llm, NEVER, Flag(), second_opinion=consistency)
    calls = []
    real = spill_model.generate_params

    def counted(prompts, params, **kw):
        calls.append(params)
        return real(prompts, params, **kw)

    spill_model.generate_params = counted  # type: ignore[method-assign]
    try:
        response = engine.query(Q_CITY)
    finally:
        del spill_model.generate_params
    verdict = response.metadata["spill_guard"]
    opinion = verdict["second_opinion"]
    assert opinion is not None and opinion["samples"] == 3
    assert len(calls) == 2, "the engine's answer, then the three samples in one call"
    assert isinstance(calls[1], list) and len(calls[1]) == 3
    assert len(captured_events) == 4  # the first answer and each sample were announced
    assert [e.answer for e in captured_events[1:]] == [a["answer"] for a in opinion["answers"]]
