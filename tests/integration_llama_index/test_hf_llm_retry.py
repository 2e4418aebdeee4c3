"""Retry on an instrumented, unmodified ``HuggingFaceLLM`` in a guarded query engine (completion calls).

The engine's LLM completes a RAG prompt; a retry re-asks the same LLM through its scorer
(``HuggingFaceLLMScorer.reask``) while the core's drop-in makes the torch model sample with the
attempt's params. Each attempt must be what the core generates for its prompt ids and params
(``SpillModel.generate_params``), and carry those ids. (Chat engines: tests/parity.)
"""

from __future__ import annotations

import pytest
from li_support import ALWAYS, MAX_NEW

pytest.importorskip("llama_index.llms.huggingface",
                    reason="needs: pip install -e integrations/llama_index[huggingface]")
pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]

QUESTION = "In which city was Acme Lumen Robotics founded?"
INSTRUCTION = "Reply with the city name only."


@pytest.fixture(scope="module")
def hf_llm(spill_model, torch_single_thread):
    from llama_index.llms.huggingface import HuggingFaceLLM

    loaded = spill_model.loaded
    return HuggingFaceLLM(model=loaded.model, tokenizer=loaded.tokenizer, max_new_tokens=MAX_NEW,
                          context_window=loaded.context_window)


def ask(hf_llm, spill_model, index, strategy):
    from spill_guard import Abstain, Retry, SpillGuard
    from spill_guard_llama_index import GuardedQueryEngine, instrument

    scorer = instrument(hf_llm, SpillGuard(spill_model, threshold=ALWAYS))  # every answer flagged: the retry runs
    try:
        engine = GuardedQueryEngine(index.as_query_engine(llm=hf_llm, similarity_top_k=1), hf_llm,
                                    policy=Retry(attempts=2, strategy=strategy, fallback=Abstain()))
        return engine.query(QUESTION).metadata["spill_guard"]
    finally:
        scorer.uninstrument()


def test_a_reprompt_retry_completes_the_prompt_with_the_instruction(hf_llm, spill_model, index):
    from spill_guard import Reprompt
    from spill_guard.models.params import GenerationParams

    report = ask(hf_llm, spill_model, index, Reprompt(INSTRUCTION))
    first, retry = report["attempts"]
    assert [first["strategy"], retry["strategy"]] == ["greedy", "reprompt"]
    tokenizer = spill_model.tokenizer
    asked = tokenizer.decode(first["prompt_ids"])  # the engine's formatted RAG prompt, as the LLM fed it
    assert retry["prompt_ids"] == tokenizer(f"{asked.rstrip()} {INSTRUCTION}")["input_ids"]
    [core] = spill_model.generate_params([retry["prompt_ids"]], GenerationParams(max_new_tokens=MAX_NEW))
    assert retry["answer"] == core.answer


def test_a_resample_retry_is_the_core_seeded_sample_of_the_same_prompt(hf_llm, spill_model, index):
    from spill_guard import Resample
    from spill_guard.models.params import GenerationParams

    report = ask(hf_llm, spill_model, index, Resample(temperature=0.7, seed=0))
    first, retry = report["attempts"]
    assert retry["strategy"] == "resample@0.7" and retry["prompt_ids"] == first["prompt_ids"]
    params = GenerationParams(max_new_tokens=MAX_NEW).sampled(0.7, 0.95, 2)  # attempt 2: seed 0 + 2
    [core] = spill_model.generate_params([retry["prompt_ids"]], params)
    assert retry["answer"] == core.answer
