"""Drop-in: SpillCallbackHandler(model=...) scores an unmodified ChatHuggingFace / HuggingFacePipeline.

Real langchain-huggingface classes over a real transformers text-generation pipeline built on the
embedded model. Every call style's per-token energies are checked against the core's
teacher-forced scores (SpillModel.score_ids) of the same prompt ids and generated ids.
"""

from __future__ import annotations

import asyncio
import warnings

import numpy as np
import pytest

from delta_support import assert_same_deltas

pytest.importorskip("langchain_huggingface", reason="pip install -e 'integrations/langchain[test]'")

from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline  # noqa: E402
from transformers import pipeline  # noqa: E402

from spill_guard.capture.recorder import GenerationRecorder  # noqa: E402
from spill_guard.policy import Abstain  # noqa: E402
from spill_guard.spans import SpanLocator  # noqa: E402
from spill_guard_langchain import SpillCallbackHandler, SpillGuardedRunnable, verdict_of  # noqa: E402
from spill_guard_langchain.callbacks import UnscoredRunWarning  # noqa: E402

pytestmark = pytest.mark.model

NEW_TOKENS = 8
TOL = 1e-4


@pytest.fixture(scope="module")
def hf(spill_model):
    """One pipeline, its LLM and chat wrappers (as a user builds them); the model's generate restored after."""
    loaded = spill_model.loaded
    pipe = pipeline("text-generation", model=loaded.model, tokenizer=loaded.tokenizer,
                    max_new_tokens=NEW_TOKENS, do_sample=False)  # return_full_text left at its default (True)
    llm = HuggingFacePipeline(pipeline=pipe)
    short = pipeline("text-generation", model=loaded.model, tokenizer=loaded.tokenizer,
                     max_new_tokens=NEW_TOKENS, do_sample=False, return_full_text=False)
    chat = ChatHuggingFace(llm=HuggingFacePipeline(pipeline=short))
    yield {"pipe": pipe, "llm": llm, "chat": chat}
    GenerationRecorder.for_model(loaded.model, loaded.tokenizer).uninstall()


def _handler(hf, **kwargs):
    return SpillCallbackHandler(model=hf["chat"], threshold=kwargs.pop("threshold", 0.0), **kwargs)


def _assert_matches_core(spill_model, verdicts):
    """Each verdict's per-token E, F, Δ (and the verdict's Δ list) equal the teacher-forced core scores."""
    scored = [v.scored for v in verdicts]
    refs = spill_model.score_ids([s.prompt_ids for s in scored], [s.answer_ids for s in scored])
    for verdict, s, ref in zip(verdicts, scored, refs):
        assert len(s.answer_ids) >= 1
        for name in ("token_energy", "marginal_energy"):
            np.testing.assert_allclose(getattr(s, name), getattr(ref, name), atol=TOL, rtol=0)
        # The drop-in skips z_(T+1) after a textless stop token (final_step="auto"): only that Δ may be missing.
        textless_stop = ref.stopped_on_eos and ref.tokens[-1].special
        assert_same_deltas(s.spilled_energy, ref.spilled_energy, abs=TOL, last_is_textless_stop=textless_stop)
        assert_same_deltas(verdict.token_scores, ref.spilled_energy, abs=TOL, last_is_textless_stop=textless_stop)


def _chat_prompt_ids(hf, question):
    tokenizer = hf["pipe"].tokenizer
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_chat_invoke_gives_its_verdict_equal_to_core(hf, spill_model):
    handler = _handler(hf)
    message = hf["chat"].invoke("What is the capital of France?", config={"callbacks": [handler]})
    verdict = handler.verdicts[-1]
    assert verdict.scored.prompt_ids == _chat_prompt_ids(hf, "What is the capital of France?")
    assert hf["pipe"].tokenizer.decode(verdict.scored.answer_ids, skip_special_tokens=True).strip() == message.content.strip()
    assert verdict.threshold == 0.0 and verdict.score is not None and verdict.action.value in ("passed", "flagged")
    assert len(verdict.token_scores) == len(verdict.scored.answer_ids) <= NEW_TOKENS
    _assert_matches_core(spill_model, [verdict])
    # The report reaches the returned message (for wrappers) with OpenAI-format logprobs (for UQLM).
    assert verdict_of(message).score == pytest.approx(verdict.score)
    content = message.response_metadata["logprobs"]["content"]
    visible = [t for t in verdict.scored.tokens if not t.special]
    np.testing.assert_allclose([c["logprob"] for c in content],
                               [verdict.scored.trace.log_prob[i] for i, t in enumerate(verdict.scored.tokens) if not t.special])
    assert len(content) == len(visible) and all(c["bytes"] == list(c["token"].encode()) for c in content)
    assert handler.counts["answers"] == 1 and handler.counts["unscored"] == 0


def test_pipeline_with_return_full_text_scores_only_the_generated_tokens(hf, spill_model):
    handler = _handler(hf)
    prompt = "The capital of Italy is"
    result = hf["llm"].generate([prompt], callbacks=[handler])
    text = result.generations[0][0].text
    assert text.startswith(prompt)  # return_full_text=True: the pipeline echoes the prompt
    verdict = handler.verdict_for(result.run[0].run_id)
    assert verdict.scored.prompt_ids == hf["pipe"].tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert text[len(prompt):].strip().startswith(verdict.scored.answer.strip()[:5])
    _assert_matches_core(spill_model, [verdict])


def test_multi_prompt_padded_batch_maps_rows_back_by_order(hf, spill_model):
    """One BaseLLM.generate: every start event, then one padded generate call for all rows."""
    loaded = spill_model.loaded
    batched = HuggingFacePipeline(pipeline=pipeline("text-generation", model=loaded.model, tokenizer=loaded.tokenizer,
                                                    max_new_tokens=NEW_TOKENS, do_sample=False, batch_size=3,
                                                    return_full_text=False), batch_size=3)
    prompts = ["Two plus two is", "The largest planet in the solar system is called", "Water boils at"]
    handler = _handler(hf)
    result = batched.generate(prompts, callbacks=[handler])
    verdicts = [handler.verdict_for(info.run_id) for info in result.run]
    tokenizer = loaded.tokenizer
    for prompt, verdict, gens in zip(prompts, verdicts, result.generations):
        assert verdict.scored.prompt_ids == tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert verdict.question == prompt
        assert tokenizer.decode(verdict.scored.answer_ids, skip_special_tokens=True).strip() == gens[0].text.strip()
    _assert_matches_core(spill_model, verdicts)


def test_eight_concurrent_chat_runs_keep_their_verdicts_apart(hf, spill_model):
    questions = [f"What is {a} plus {b}?" for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (2, 9), (4, 4), (6, 1), (8, 3)]]
    handler = _handler(hf)
    messages = hf["chat"].batch(questions, config={"callbacks": [handler], "max_concurrency": 8})
    assert handler.counts["answers"] == 8 and handler.counts["unscored"] == 0
    by_question = {v.question: v for v in handler.verdicts}
    assert sorted(by_question) == sorted(questions)
    for question, message in zip(questions, messages):
        verdict = by_question[question]
        assert verdict.scored.prompt_ids == _chat_prompt_ids(hf, question)
        assert message.response_metadata["spill_guard"]["token_ids"] == verdict.scored.answer_ids
        assert verdict_of(message).question == question
    _assert_matches_core(spill_model, list(by_question.values()))


def test_stream_is_scored_through_the_streamer_thread(hf, spill_model):
    handler = _handler(hf)
    chunks = list(hf["chat"].stream("Name a primary color.", config={"callbacks": [handler]}))
    text = "".join(c.content for c in chunks)
    [verdict] = handler.verdicts
    assert verdict.question == "Name a primary color."
    assert hf["pipe"].tokenizer.decode(verdict.scored.answer_ids, skip_special_tokens=True).strip() == text.strip()
    _assert_matches_core(spill_model, [verdict])


def test_pipeline_ainvoke_and_astream_are_scored(hf, spill_model):
    handler = _handler(hf)

    async def run():
        text = await hf["llm"].ainvoke("The sky is", config={"callbacks": [handler]})
        streamed = [c async for c in hf["llm"].astream("Grass is", config={"callbacks": [handler]})]
        return text, "".join(streamed)

    text, streamed = asyncio.run(run())
    assert handler.counts["answers"] == 2 and handler.counts["unscored"] == 0
    first, second = handler.verdicts
    assert first.question == "The sky is" and second.question == "Grass is"
    assert text.endswith(hf["pipe"].tokenizer.decode(first.scored.answer_ids, skip_special_tokens=True).strip())
    _assert_matches_core(spill_model, [first, second])


def test_chat_ainvoke_is_not_supported_by_langchain_huggingface_itself(hf):
    """ChatHuggingFace refuses async with a local pipeline, with or without the handler."""
    with pytest.raises(NotImplementedError):
        asyncio.run(hf["chat"].ainvoke("Hi", config={"callbacks": [_handler(hf)]}))


def test_abstain_is_enforced_on_a_chain_built_on_unmodified_chat_huggingface(hf):
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | hf["chat"] | StrOutputParser()
    reply = "I am not sure."
    flagging = _handler(hf, threshold=-100.0)  # flags every answer: the policy's action is known
    guarded = SpillGuardedRunnable(chain, Abstain(reply), include_verdict=True)
    result = guarded.invoke({"q": "What is the capital of France?"}, config={"callbacks": [flagging]})
    assert result.output == reply and result.verdict.action.value == "abstained"
    passing = _handler(hf, threshold=100.0)
    # The handler on the model itself (its own callbacks run after the guard's): still enforced.
    local = ChatPromptTemplate.from_messages([("human", "{q}")]) | hf["chat"].with_config(callbacks=[passing]) | StrOutputParser()
    ok = SpillGuardedRunnable(local, Abstain(reply), include_verdict=True).invoke({"q": "What is the capital of France?"})
    assert ok.verdict.action.value == "passed" and "Paris" in ok.output


class _BrokenLocator(SpanLocator):
    name = "broken"

    def _locate(self, answer, question):
        raise RuntimeError("locator exploded")


def test_a_raising_scorer_never_breaks_the_call(hf):
    handler = SpillCallbackHandler(model=hf["chat"], threshold=0.0, locator=_BrokenLocator())
    plain = hf["chat"].invoke("What is the capital of Spain?")
    with pytest.warns(UnscoredRunWarning, match="locator exploded"):
        message = hf["chat"].invoke("What is the capital of Spain?", config={"callbacks": [handler]})
    assert message.content == plain.content
    assert handler.counts["errors"] == 1 and handler.verdicts == []
    assert GenerationRecorder.for_model(hf["pipe"].model, hf["pipe"].tokenizer).pending == 0


def test_a_raising_capture_hook_never_breaks_generation(hf):
    recorder = GenerationRecorder.for_model(hf["pipe"].model, hf["pipe"].tokenizer)
    handler = _handler(hf)
    plain = hf["chat"].invoke("Name a fruit.")

    def explode(step):
        raise ValueError("hook exploded")

    recorder.listeners = (explode,)
    try:
        with pytest.warns(UnscoredRunWarning, match="hook exploded"):
            message = hf["chat"].invoke("Name a fruit.", config={"callbacks": [handler]})
            streamed = "".join(c.content for c in hf["chat"].stream("Name a fruit.", config={"callbacks": [handler]}))
    finally:
        recorder.listeners = ()
    assert message.content == plain.content and streamed.strip() == plain.content.strip()
    assert handler.counts["unscored"] == 2 and "capture failed" in next(iter(handler.unscored_reasons.values()))


def test_a_stream_consumer_that_stops_early_neither_hangs_nor_leaks_into_the_next_run(hf, spill_model):
    handler = _handler(hf)
    question = "Tell me about the moon."
    stream = hf["chat"].stream(question, config={"callbacks": [handler]})
    next(stream)
    stream.close()  # the consumer walks away; the pipeline's own thread finishes generating on its own
    recorder = GenerationRecorder.for_model(hf["pipe"].model, hf["pipe"].tokenizer)
    assert recorder.pending == 0 and handler.verdicts == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnscoredRunWarning)
        message = hf["chat"].invoke(question, config={"callbacks": [handler]})
    verdict = handler.verdicts[-1]
    assert verdict.scored.prompt_ids == _chat_prompt_ids(hf, question)
    assert hf["pipe"].tokenizer.decode(verdict.scored.answer_ids, skip_special_tokens=True).strip() == message.content.strip()
    _assert_matches_core(spill_model, [verdict])


def test_handler_rule_options_need_a_model():
    from spill_guard.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="only apply with model="):
        SpillCallbackHandler(threshold=0.5)
    with pytest.raises(InvalidParameterError, match="not a local HuggingFace"):
        SpillCallbackHandler(model=object(), threshold=0.5)


def test_readme_dropin_snippet_runs():
    import re
    import subprocess
    import sys
    from pathlib import Path

    from spill_guard.calibration import default_calibration

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("### Drop-in: an existing ChatHuggingFace chain"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert code.count("handler") >= 3 and "ChatHuggingFace(llm=" in code
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    answer, verdict = done.stdout.strip().splitlines()[-1].split(" | ")
    assert "Paris" in answer
    action, score, _, threshold, n, _ = verdict.split()
    packaged = default_calibration("smollm2-135m-instruct").threshold  # no literal threshold: the packaged one
    assert "threshold=" not in code
    assert action in ("passed", "flagged") and float(threshold) == packaged and int(n) >= 1
    assert (action == "flagged") == (float(score) > packaged)


def test_agent_middleware_enforces_on_unmodified_chat_huggingface(hf):
    pytest.importorskip("langchain.agents.middleware", reason="needs langchain v1: pip install 'langchain>=1'")
    from langchain.agents import create_agent

    from spill_guard_langchain import SpillGuardMiddleware

    middleware = SpillGuardMiddleware(Abstain("Not sure."))
    agent = create_agent(hf["chat"], tools=[], middleware=[middleware])
    ask = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
    last = agent.invoke(ask, config={"callbacks": [_handler(hf, threshold=-100.0)]})["messages"][-1]
    assert last.content == "Not sure." and middleware.verdicts[-1].action.value == "abstained"
    assert middleware.verdicts[-1].question == "What is the capital of France?" and middleware.verdicts[-1].token_scores


def test_each_answer_and_each_guarded_decision_is_an_otel_evaluation_event_on_the_callers_span(hf, monkeypatch):
    pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the test extra)")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from spill_guard.observability import otel

    monkeypatch.delenv(otel.ENV_VAR, raising=False)
    otel.reset()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    handler = _handler(hf, threshold=-100.0)  # flags every answer
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | hf["chat"] | StrOutputParser()
    try:
        with tracer.start_as_current_span("plain"):
            hf["chat"].invoke("What is the capital of France?", config={"callbacks": [handler]})
        with tracer.start_as_current_span("guarded"):
            SpillGuardedRunnable(chain, Abstain("Not sure.")).invoke({"q": "Name a planet."},
                                                                     config={"callbacks": [handler]})
    finally:
        otel.reset()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    [plain] = [e for e in spans["plain"].events if e.name == otel.EVENT_NAME]
    assert plain.attributes["gen_ai.evaluation.score.label"] == "flagged"
    assert plain.attributes["gen_ai.evaluation.score.value"] == pytest.approx(handler.verdicts[0].score)
    # Under the guarded runnable: the handler's answer-level event, then the runnable's decision.
    labels = [e.attributes["gen_ai.evaluation.score.label"] for e in spans["guarded"].events if e.name == otel.EVENT_NAME]
    assert labels == ["flagged", "abstained"]
