"""Prometheus metrics from the LangChain integration: the server's metric names, each verdict counted once.

Real ``ChatHuggingFace`` / ``HuggingFacePipeline`` over a transformers pipeline on the embedded
model (the drop-in handler), a real ``SpillChatModel``, and a real ``/metrics`` endpoint from
prometheus-client's own ``start_http_server`` on a loopback port, scraped with httpx and read
with prometheus-client's text parser. Every test has its own ``CollectorRegistry``.
"""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("langchain_huggingface", reason="pip install -e 'integrations/langchain[test]'")
prometheus_client = pytest.importorskip("prometheus_client")

import httpx  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest, start_http_server  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from transformers import pipeline  # noqa: E402

from spill_guard.capture.recorder import GenerationRecorder  # noqa: E402
from spill_guard.policy import Retry  # noqa: E402
from spill_guard_langchain import SpillCallbackHandler, SpillChatModel, SpillGuardedRunnable  # noqa: E402

pytestmark = pytest.mark.model

NEW_TOKENS = 4
QUESTIONS = ["What is the capital of France?", "Name a planet.", "Name a colour."]


@pytest.fixture(scope="module")
def hf(spill_model):
    """A user's unmodified chat and pipeline LLM on the embedded model; the model's generate restored after."""
    loaded = spill_model.loaded
    pipe = pipeline("text-generation", model=loaded.model, tokenizer=loaded.tokenizer,
                    max_new_tokens=NEW_TOKENS, do_sample=False, return_full_text=False)
    llm = HuggingFacePipeline(pipeline=pipe)
    yield {"llm": llm, "chat": ChatHuggingFace(llm=llm)}
    GenerationRecorder.for_model(loaded.model, loaded.tokenizer).uninstall()


def samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    return sum(s.value for s in samples(text)
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def assert_counts_match(text: str, verdicts: list) -> None:
    """The exposition counts exactly these verdicts: by action, in the histogram, and their tokens."""
    assert value(text, "spill_guard_answers_total") == len(verdicts)
    for action, n in Counter(v.action.value for v in verdicts).items():
        assert value(text, "spill_guard_answers_total", action=action) == n
    assert value(text, "spill_guard_risk_score_count") == sum(v.score is not None for v in verdicts)
    assert value(text, "spill_guard_generated_tokens_total") == sum(len(v.tokens) for v in verdicts)


def test_dropin_handler_counts_each_answer_once_and_serves_them_over_http(hf):
    registry = CollectorRegistry()
    handler = SpillCallbackHandler(model=hf["chat"], threshold=-0.5, metrics=registry)
    for question in QUESTIONS[:2]:
        hf["chat"].invoke(question, config={"callbacks": [handler]})
    hf["llm"].invoke(QUESTIONS[2], config={"callbacks": [handler]})
    assert handler.counts["answers"] == 3 and handler.counts["unscored"] == 0

    # What a LangChain app does to expose /metrics: prometheus-client's own server, here on a free loopback port.
    httpd, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        response = httpx.get(f"http://127.0.0.1:{httpd.server_port}/metrics", timeout=10)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert_counts_match(response.text, handler.verdicts)
    assert {v.action.value for v in handler.verdicts} <= {"passed", "flagged"}  # the handler only reports


def test_spill_chat_model_counts_its_answers_and_a_handler_on_the_same_registry_does_not_recount(spill_model):
    registry = CollectorRegistry()
    model = SpillChatModel(spill_model=spill_model, max_tokens=NEW_TOKENS, metrics=registry)
    handler = SpillCallbackHandler(metrics=registry)  # sees the same verdict objects the model counted
    for question in QUESTIONS[:2]:
        model.invoke(question, config={"callbacks": [handler]})
    streamed = list(model.stream(QUESTIONS[2], config={"callbacks": [handler]}))
    assert streamed and handler.counts["answers"] == 3
    assert_counts_match(generate_latest(registry).decode(), handler.verdicts)


def test_guarded_runnable_counts_the_decision_once_and_the_model_each_attempt(spill_model):
    answers, decisions = CollectorRegistry(), CollectorRegistry()
    model = SpillChatModel(spill_model=spill_model, max_tokens=NEW_TOKENS, threshold=-100.0, metrics=answers)
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model | StrOutputParser()
    guarded = SpillGuardedRunnable(chain, Retry(attempts=2), include_verdict=True, metrics=decisions)
    verdict = guarded.invoke({"q": QUESTIONS[0]}).verdict
    assert len(verdict.attempts) == 2 and verdict.action.value != "passed"  # every attempt flagged
    decided = generate_latest(decisions).decode()
    assert_counts_match(decided, [verdict])  # one decision, with the policy's action
    assert value(decided, "spill_guard_answers_total", action=verdict.action.value) == 1
    generated = generate_latest(answers).decode()
    assert value(generated, "spill_guard_answers_total", action="flagged") == 2  # each attempt is one answer


def test_a_wrong_metrics_value_is_refused_with_the_value(spill_model):
    from spill_guard.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="got 'on'"):
        SpillCallbackHandler(metrics="on")
    with pytest.raises(InvalidParameterError, match="got 'on'"):
        SpillChatModel(spill_model=spill_model, metrics="on")


def test_agent_middleware_counts_each_decision(spill_model):
    pytest.importorskip("langchain.agents.middleware", reason="needs langchain v1: pip install 'langchain>=1'")
    from langchain.agents import create_agent

    from spill_guard.policy import Abstain
    from spill_guard_langchain import SpillGuardMiddleware

    registry = CollectorRegistry()
    middleware = SpillGuardMiddleware(Abstain("Not sure."), metrics=registry)
    model = SpillChatModel(spill_model=spill_model, threshold=-100.0, max_tokens=NEW_TOKENS)
    agent = create_agent(model, tools=[], middleware=[middleware])
    last = agent.invoke({"messages": [{"role": "user", "content": QUESTIONS[0]}]})["messages"][-1]
    assert last.content == "Not sure."
    assert_counts_match(generate_latest(registry).decode(), middleware.verdicts)
    assert value(generate_latest(registry).decode(), "spill_guard_answers_total", action="abstained") == 1


def test_dropin_handler_given_a_guard_counts_into_the_guards_metrics(hf, spill_model):
    from spill_guard import SpillGuard

    registry = CollectorRegistry()
    handler = SpillCallbackHandler(model=hf["chat"], guard=SpillGuard(spill_model, threshold=-0.5, metrics=registry))
    hf["chat"].invoke(QUESTIONS[1], config={"callbacks": [handler]})
    assert handler.counts["answers"] == 1
    assert_counts_match(generate_latest(registry).decode(), handler.verdicts)
