"""Retry on an unmodified ``HuggingFacePipeline`` watched by ``SpillCallbackHandler(model=...)``.

``SpillGuardedRunnable`` re-runs the chain inside the core's attempt scope; the handler's drop-in
regenerates the pipeline's torch model with the attempt's prompt and sampling. Each attempt must
be what the core generates for its prompt ids and params (``SpillModel.generate_params``), carry
those ids, and the pipeline must still return its own prompt's text around the new answer.
(``ChatHuggingFace``: tests/parity.)
"""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_huggingface", reason="pip install -e 'integrations/langchain[test]'")

from langchain_huggingface import HuggingFacePipeline  # noqa: E402
from transformers import pipeline  # noqa: E402

from spill_guard.capture.recorder import GenerationRecorder  # noqa: E402
from spill_guard.models.params import GenerationParams  # noqa: E402
from spill_guard.policy import Abstain, Reprompt, Resample, Retry  # noqa: E402
from spill_guard_langchain import SpillCallbackHandler, SpillGuardedRunnable  # noqa: E402

pytestmark = pytest.mark.model

NEW_TOKENS = 12
PROMPT = "Q: What is the capital of Italy?\nA:"
INSTRUCTION = "Reply with the city name only."


@pytest.fixture(scope="module")
def llm(spill_model, torch_single_thread):
    """A pipeline returning the full text (its default): the prompt must come back as the user wrote it."""
    loaded = spill_model.loaded
    wrapped_before = "generate" in loaded.model.__dict__
    pipe = pipeline("text-generation", model=loaded.model, tokenizer=loaded.tokenizer, max_new_tokens=NEW_TOKENS,
                    do_sample=False)
    yield HuggingFacePipeline(pipeline=pipe)
    if not wrapped_before:
        GenerationRecorder.for_model(loaded.model, loaded.tokenizer).uninstall()


def retried(llm, strategy):
    handler = SpillCallbackHandler(model=llm, threshold=-1e9)  # every answer flagged: the retry runs
    guarded = SpillGuardedRunnable(llm, Retry(attempts=2, strategy=strategy, fallback=Abstain()), include_verdict=True)
    try:
        return guarded.invoke(PROMPT, config={"callbacks": [handler]}), handler
    finally:
        handler.dropin.close()


@pytest.mark.parametrize("strategy", [Reprompt(INSTRUCTION), Resample(temperature=0.7, seed=0)],
                         ids=["reprompt", "resample"])
def test_each_attempt_is_the_core_answer_to_its_prompt_and_params(spill_model, llm, strategy):
    out, handler = retried(llm, strategy)
    first, retry = out.verdict.attempts
    tokenizer = spill_model.tokenizer
    asked = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]  # the text-generation pipeline's ids
    greedy = GenerationParams(max_new_tokens=NEW_TOKENS)
    if isinstance(strategy, Reprompt):
        ids, params = tokenizer(f"{PROMPT} {INSTRUCTION}", add_special_tokens=False)["input_ids"], greedy
    else:
        ids, params = asked, greedy.sampled(0.7, 0.95, 2)  # attempt 2: the strategy's seed 0 + 2
    [core_first] = spill_model.generate_params([asked], greedy)
    [core_retry] = spill_model.generate_params([ids], params)

    assert [first.strategy, retry.strategy] == ["greedy", strategy.name]
    assert first.prompt_ids == asked and retry.prompt_ids == ids
    assert (first.answer, retry.answer) == (core_first.answer, core_retry.answer)
    assert [v.attempts[0].strategy for v in handler.verdicts] == ["greedy", strategy.name]
    assert out.verdict.action.value == "abstained"


def test_the_pipeline_returns_its_own_prompt_then_the_attempts_answer(spill_model, llm):
    """A re-prompt feeds other ids, but the pipeline strips (or keeps) the prompt the user gave it."""
    handler = SpillCallbackHandler(model=llm, threshold=-1e9)
    guarded = SpillGuardedRunnable(llm, Retry(attempts=2, strategy=Reprompt(INSTRUCTION), fallback=Abstain()),
                                   include_verdict=True)
    seen = []

    class Texts(SpillCallbackHandler):
        def on_llm_end(self, response, **kwargs):
            seen.extend(g.text for gens in response.generations for g in gens)

    try:
        guarded.invoke(PROMPT, config={"callbacks": [handler, Texts()]})
    finally:
        handler.dropin.close()
    assert len(seen) == 2 and all(text.startswith(PROMPT) for text in seen), seen  # not the re-prompted text
    first, retry = (verdict.original_answer for verdict in handler.verdicts)
    assert [text[len(PROMPT):].strip() for text in seen] == [first.strip(), retry.strip()]
    assert first != retry
