"""An unmodified ``HuggingFaceLLM`` (llama-index-llms-huggingface) over the embedded model, scored by
``instrument``: every call style equals the core's teacher-forced scores, concurrent calls keep their
verdicts apart, guarded engines enforce on it, a failing scorer or an abandoned stream never breaks
or hangs the user's call, and each answer is one OpenTelemetry evaluation event on the call's span."""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from delta_support import assert_same_deltas

from li_support import ALWAYS, MAX_NEW, NEVER

pytest.importorskip("llama_index.llms.huggingface", reason="needs: pip install -e integrations/llama_index[huggingface]")
pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]

QUESTIONS = ["What is the capital of France?", "Name a colour.", "What is 2 + 2?", "Name a fruit.",
             "Who wrote Hamlet?", "Name a planet.", "What is water made of?", "Name a metal."]


@pytest.fixture(scope="module")
def hf_llm(spill_model):
    from llama_index.llms.huggingface import HuggingFaceLLM

    loaded = spill_model.loaded
    return HuggingFaceLLM(model=loaded.model, tokenizer=loaded.tokenizer, max_new_tokens=MAX_NEW,
                          context_window=loaded.context_window)


@pytest.fixture()
def make_scorer(hf_llm, spill_model):
    from spill_guard import SpillGuard
    from spill_guard_llama_index import instrument

    made = []

    def make(threshold: float = NEVER, **guard_kwargs):
        scorer = instrument(hf_llm, SpillGuard(spill_model, threshold=threshold, **guard_kwargs))
        made.append(scorer)
        return scorer

    yield make
    for scorer in made:
        scorer.uninstrument()


@pytest.fixture()
def llm_events():
    """SpillScoredEvent and LlamaIndex's LLM end events, in dispatch order."""
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent

    from spill_guard_llama_index import SpillScoredEvent

    class Capture(BaseEventHandler):
        events: list = []

        def handle(self, event, **kwargs):
            if isinstance(event, (SpillScoredEvent, LLMChatEndEvent, LLMCompletionEndEvent)):
                self.events.append(event)

    handler = Capture(events=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    yield handler.events
    root.event_handlers = [h for h in root.event_handlers if h is not handler]


def user(text):
    from llama_index.core.llms import ChatMessage

    return [ChatMessage(role="user", content=text)]


def assert_matches_teacher_forced(spill_model, verdict):
    scored = verdict.scored
    [forced] = spill_model.score_ids([scored.prompt_ids], [scored.answer_ids])
    assert len(scored.answer_ids) >= 1
    assert_same_deltas(verdict.token_scores, forced.spilled_energy, abs=1e-4,
                       last_is_textless_stop=forced.stopped_on_eos and forced.tokens[-1].special)
    np.testing.assert_allclose(scored.token_energy, forced.token_energy, atol=1e-4, rtol=0)


async def _drain(agen):
    return [chunk async for chunk in agen]


def call(llm, style, text):
    """Run one call style; returns the final response object and its text."""
    if style == "complete":
        r = llm.complete(text)
        return r, r.text
    if style == "chat":
        r = llm.chat(user(text))
        return r, r.message.content
    if style == "stream_complete":
        r = list(llm.stream_complete(text))[-1]
        return r, r.text
    if style == "stream_chat":
        r = list(llm.stream_chat(user(text)))[-1]
        return r, r.message.content
    if style == "acomplete":
        r = asyncio.run(llm.acomplete(text))
        return r, r.text
    if style == "achat":
        r = asyncio.run(llm.achat(user(text)))
        return r, r.message.content

    async def astream(method, arg):
        return (await _drain(await method(arg)))[-1]

    if style == "astream_complete":
        r = asyncio.run(astream(llm.astream_complete, text))
        return r, r.text
    r = asyncio.run(astream(llm.astream_chat, user(text)))
    return r, r.message.content


STYLES = ["complete", "chat", "stream_complete", "stream_chat", "acomplete", "achat", "astream_complete", "astream_chat"]


@pytest.mark.parametrize("style", STYLES)
def test_every_call_style_is_scored_like_the_core_teacher_forced(hf_llm, make_scorer, spill_model, llm_events, style):
    from spill_guard_llama_index import SpillScoredEvent

    scorer = make_scorer()
    response, text = call(hf_llm, style, "Name a colour.")
    [verdict] = scorer.verdicts
    assert verdict.original_answer.strip() == text.strip() and text.strip()
    assert_matches_teacher_forced(spill_model, verdict)
    # delivered on the response, as the event of the LLM call's span, and by that span id
    assert response.additional_kwargs["spill_guard"]["score"] == pytest.approx(verdict.score)
    assert len(response.logprobs) == len(verdict.tokens)
    [scored_event] = [e for e in llm_events if isinstance(e, SpillScoredEvent)]
    assert scored_event.verdict is verdict
    assert scorer.verdict_for(scored_event.span_id) is verdict
    ends = [e for e in llm_events if not isinstance(e, SpillScoredEvent)]
    mapped = [e for e in ends if scorer.verdict_for(e.span_id) is verdict]
    # A chat span is the parent of its completion's span, so both map to the verdict. The astream_* spans
    # end before their generator runs (LlamaIndex's structure), so only the inner call's span maps there.
    assert mapped == ends if not style.startswith("astream") else mapped
    assert llm_events.index(scored_event) < llm_events.index(mapped[0])  # scored before LlamaIndex ends the call


def test_chat_verdict_uses_the_users_message_as_question(hf_llm, make_scorer):
    scorer = make_scorer()
    hf_llm.chat(user("Name a planet."))
    assert scorer.verdicts[-1].question == "Name a planet."


def test_eight_concurrent_calls_keep_their_verdicts_apart(hf_llm, make_scorer, spill_model):
    scorer = make_scorer()
    styles = ["chat", "stream_chat"] * 4  # streams generate in LlamaIndex's own threads
    start = threading.Barrier(len(QUESTIONS))

    def run(i):
        start.wait()
        return call(hf_llm, styles[i], QUESTIONS[i])

    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        results = list(pool.map(run, range(len(QUESTIONS))))
    assert scorer.scored == len(QUESTIONS) and scorer.failures == 0
    tokenizer = spill_model.tokenizer
    for question, (response, text) in zip(QUESTIONS, results):
        report = response.message.additional_kwargs["spill_guard"]
        assert report["question"] == question and report["original_answer"].strip() == text.strip()
        [verdict] = [v for v in scorer.verdicts if v.question == question]
        expected_prompt = tokenizer(hf_llm.messages_to_prompt(user(question)))["input_ids"]
        assert verdict.scored.prompt_ids == expected_prompt  # this call's own prompt, not a neighbour's
        assert report["token_scores"] == pytest.approx(verdict.token_scores, nan_ok=True)
        assert_matches_teacher_forced(spill_model, verdict)


def test_abstain_is_enforced_on_a_query_engine_over_the_unmodified_llm(hf_llm, make_scorer, index):
    from spill_guard import Abstain
    from spill_guard_llama_index import GuardedQueryEngine

    scorer = make_scorer(threshold=ALWAYS)
    engine = GuardedQueryEngine(index.as_query_engine(llm=hf_llm, similarity_top_k=1), hf_llm,
                                policy=Abstain(reply="Not sure."))
    response = engine.query("In which city was Acme Lumen Robotics founded?")
    report = response.metadata["spill_guard"]
    assert str(response) == "Not sure." and report["action"] == "abstained"
    assert report["original_answer"] == scorer.verdicts[-1].original_answer != "Not sure."
    assert report["score"] == pytest.approx(scorer.verdicts[-1].score)
    assert report["question"] == "In which city was Acme Lumen Robotics founded?"
    assert response.source_nodes


def test_chat_engine_over_the_unmodified_llm_passes_below_threshold_and_keeps_memory(hf_llm, make_scorer, index):
    from spill_guard import Abstain
    from spill_guard_llama_index import GuardedChatEngine

    scorer = make_scorer(threshold=NEVER)
    engine = GuardedChatEngine(index.as_chat_engine(chat_mode="context", llm=hf_llm, similarity_top_k=1),
                               scorer, policy=Abstain())
    reply = engine.chat("Where was Acme Lumen Robotics founded?")
    assert reply.metadata["spill_guard"]["action"] == "passed"
    assert str(reply) == scorer.verdicts[-1].original_answer
    assert engine.chat_history[-1].content == str(reply)


def test_raising_scorer_never_breaks_the_call_or_a_stream(hf_llm, spill_model):
    from spill_guard import SpillGuard
    from spill_guard.spans.cheap import CallableLocator
    from spill_guard_llama_index import SpillScoringWarning, instrument

    def broken(answer):
        raise RuntimeError("locator exploded")

    scorer = instrument(hf_llm, SpillGuard(spill_model, threshold=0.0, locator=CallableLocator(broken, "broken")))
    try:
        with pytest.warns(SpillScoringWarning, match="locator exploded"):
            text = hf_llm.complete("Name a colour.").text
        assert text.strip()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SpillScoringWarning)  # raised in LlamaIndex's stream thread
            chunks = list(hf_llm.stream_complete("Name a fruit."))
        assert chunks and chunks[-1].text.strip() and "spill_guard" not in chunks[-1].additional_kwargs
        assert scorer.failures == 2 and scorer.verdicts == [] and "locator exploded" in scorer.last_error
    finally:
        scorer.uninstrument()


def test_stream_consumer_that_stops_early_does_not_hang(hf_llm, make_scorer, spill_model):
    scorer = make_scorer()
    stream = hf_llm.stream_complete("Count from one to twenty:")
    first = next(stream)
    assert first.delta is not None
    del stream  # the consumer walks away; generation finishes in LlamaIndex's thread
    response = hf_llm.complete("Name a colour.")  # the model is not left busy or locked
    assert response.additional_kwargs["spill_guard"]["original_answer"].strip() == response.text.strip()
    deadline = time.monotonic() + 120  # a bound, not a timing assertion: the abandoned stream is scored too
    while scorer.scored < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert scorer.scored == 2 and scorer.failures == 0
    assert_matches_teacher_forced(spill_model, scorer.verdicts[0] if scorer.verdicts[0].question.startswith("Count")
                                  else scorer.verdicts[1])


def test_uninstrument_stops_scoring_and_engines_refuse_an_unscored_llm(hf_llm, make_scorer, llm_events, index):
    from spill_guard.errors import InvalidParameterError
    from spill_guard_llama_index import GuardedQueryEngine, SpillScoredEvent, scorer_of

    scorer = make_scorer()
    assert scorer_of(hf_llm) is scorer
    scorer.uninstrument()
    assert scorer_of(hf_llm) is None
    response = hf_llm.complete("Name a colour.")
    assert "spill_guard" not in response.additional_kwargs and scorer.scored == 0
    assert not [e for e in llm_events if isinstance(e, SpillScoredEvent)]
    with pytest.raises(InvalidParameterError, match="instrument"):
        GuardedQueryEngine(index.as_query_engine(llm=hf_llm), hf_llm)


def test_instrument_refuses_bad_arguments(hf_llm, make_scorer, spill_model):
    from spill_guard import SpillGuard
    from spill_guard.errors import InvalidParameterError
    from spill_guard_llama_index import instrument

    with pytest.raises(InvalidParameterError, match="not a local HuggingFaceLLM"):
        instrument(object(), threshold=0.0)
    with pytest.raises(InvalidParameterError, match="either guard"):
        instrument(hf_llm, SpillGuard(spill_model, threshold=0.0), threshold=1.0)
    make_scorer()
    with pytest.raises(InvalidParameterError, match="already instrumented"):
        instrument(hf_llm, threshold=0.0)


def test_each_answer_is_one_otel_evaluation_event_on_the_calls_span(hf_llm, make_scorer, index):
    pytest.importorskip("opentelemetry.sdk", reason="needs: pip install opentelemetry-sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from spill_guard import Abstain
    from spill_guard.observability import otel
    from spill_guard_llama_index import GuardedQueryEngine

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    scorer = make_scorer(threshold=ALWAYS)
    engine = GuardedQueryEngine(index.as_query_engine(llm=hf_llm, similarity_top_k=1), hf_llm, policy=Abstain())
    otel.configure(events="span")
    try:
        with tracer.start_as_current_span("request"):
            with tracer.start_as_current_span("llm.complete"):
                hf_llm.complete("Name a colour.")
            with tracer.start_as_current_span("llm.stream_chat"):
                list(hf_llm.stream_chat(user("Name a fruit.")))  # emitted from LlamaIndex's stream thread
            with tracer.start_as_current_span("engine.query"):
                engine.query("Where was Acme Lumen Robotics founded?")
    finally:
        otel.reset()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert not spans["request"].events
    for name, verdict, label in zip(["llm.complete", "llm.stream_chat", "engine.query"], scorer.verdicts,
                                    ["flagged", "flagged", "abstained"]):
        [event] = spans[name].events  # the engine's answer: one event, its decision (not also the LLM's)
        assert event.name == "gen_ai.evaluation.result"
        assert event.attributes["gen_ai.evaluation.name"] == "hallucination"
        assert event.attributes["gen_ai.evaluation.score.value"] == pytest.approx(verdict.score)
        assert event.attributes["gen_ai.evaluation.score.label"] == label
        assert spans[name].parent.span_id == spans["request"].context.span_id
    assert spans["llm.complete"].events[0].attributes["gen_ai.evaluation.explanation"] == scorer.verdicts[0].reason
