"""Prometheus metrics from the LlamaIndex integration: the server's names, each answer counted once.

A real ``SpillLLM`` and an unmodified ``HuggingFaceLLM`` scored by ``instrument`` on the embedded
model, and a guarded query engine over a real index: answers made outside an engine are counted
where they are scored; inside one, only the engine's decision is (as for the OpenTelemetry
events). Every test has its own ``CollectorRegistry``, read back with prometheus-client's parser.
"""

from __future__ import annotations

from collections import Counter

import pytest

from li_support import ALWAYS, MAX_NEW, NEVER

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    text = generate_latest(registry).decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def assert_counts_match(registry: CollectorRegistry, verdicts: list) -> None:
    assert value(registry, "spill_guard_answers_total") == len(verdicts)
    for action, n in Counter(v.action.value for v in verdicts).items():
        assert value(registry, "spill_guard_answers_total", action=action) == n
    assert value(registry, "spill_guard_risk_score_count") == sum(v.score is not None for v in verdicts)
    assert value(registry, "spill_guard_generated_tokens_total") == sum(len(v.tokens) for v in verdicts)


@pytest.fixture(scope="module")
def hf_llm(spill_model):
    pytest.importorskip("llama_index.llms.huggingface",
                        reason="needs: pip install -e integrations/llama_index[huggingface]")
    from llama_index.llms.huggingface import HuggingFaceLLM

    loaded = spill_model.loaded
    return HuggingFaceLLM(model=loaded.model, tokenizer=loaded.tokenizer, max_new_tokens=MAX_NEW,
                          context_window=loaded.context_window)


def test_spill_llm_counts_each_answer_once(spill_model, captured_events):
    from llama_index.core.llms import ChatMessage

    from spill_guard_llama_index import SpillLLM

    registry = CollectorRegistry()
    llm = SpillLLM(model=spill_model, max_new_tokens=4, metrics=registry)
    llm.complete("Name a colour.")
    llm.chat([ChatMessage(role="user", content="Name a planet.")])
    list(llm.stream_complete("Name a fruit."))
    verdicts = [event.verdict for event in captured_events]
    assert len(verdicts) == 3
    assert_counts_match(registry, verdicts)


def test_guarded_query_engine_counts_only_its_decision(index, make_llm):
    from spill_guard.policy import Abstain
    from spill_guard_llama_index import GuardedQueryEngine

    registry = CollectorRegistry()
    llm = make_llm(ALWAYS, metrics=registry, policy=Abstain("Not sure."))
    engine = GuardedQueryEngine(index.as_query_engine(llm=llm, similarity_top_k=1), llm)
    response = engine.query("In which city was Acme Lumen Robotics founded?")
    assert response.response == "Not sure."
    assert value(registry, "spill_guard_answers_total") == 1  # not also a "flagged" count for the LLM call
    assert value(registry, "spill_guard_answers_total", action="abstained") == 1


def test_instrumented_huggingface_llm_counts_each_answer_once(hf_llm, spill_model):
    from spill_guard import SpillGuard
    from spill_guard_llama_index import instrument

    registry = CollectorRegistry()
    with instrument(hf_llm, SpillGuard(spill_model, threshold=NEVER, metrics=registry)) as scorer:
        hf_llm.complete("Name a colour.")
        hf_llm.complete("Name a planet.")
        list(hf_llm.stream_complete("Name a fruit."))
        verdicts = scorer.verdicts
    assert len(verdicts) == 3 and all(v.action.value == "passed" for v in verdicts)
    assert_counts_match(registry, verdicts)


def test_instrument_builds_its_guard_with_metrics_and_refuses_them_next_to_a_guard(hf_llm, spill_model):
    from spill_guard import SpillGuard
    from spill_guard.errors import InvalidParameterError
    from spill_guard_llama_index import SpillLLM, instrument

    registry = CollectorRegistry()
    with instrument(hf_llm, threshold=ALWAYS, metrics=registry) as scorer:
        hf_llm.complete("Name a colour.")
        assert scorer.guard.metrics is not None
        assert_counts_match(registry, scorer.verdicts)
    assert value(registry, "spill_guard_answers_total", action="flagged") == 1
    guard = SpillGuard(spill_model, threshold=NEVER)
    with pytest.raises(InvalidParameterError, match="metrics"):
        instrument(hf_llm, guard, metrics=registry)
    with pytest.raises(InvalidParameterError, match="metrics"):
        SpillLLM(guard, metrics=registry)
