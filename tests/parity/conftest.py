"""Fixtures of the door-parity test (tests/parity/test_door_parity.py); the door adapters live in doors.py.

Every door needs its optional packages (the server extra, the openai SDK, both integrations and the
HuggingFace classes they guard); ``make test`` installs them all.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # ChatHuggingFace / HuggingFaceLLM read the local model only

NEEDS = (("fastapi", "pip install -e '.[serve]'"), ("openai", "pip install 'openai>=1.40'"),
         ("langchain_huggingface", "pip install -e 'integrations/langchain[test]'"),
         ("llama_index.llms.huggingface", "pip install -e 'integrations/llama_index[test,huggingface]'"))
for module, install in NEEDS:
    pytest.importorskip(module, reason=f"the door-parity test drives every door; needs: {install}")


@pytest.fixture(scope="module")
def parity_model(spill_model):
    """The session's embedded model without the default instruction: the library door then feeds the
    model the question alone, as every chat door sends it."""
    from spill_guard import SpillModel

    return SpillModel(spill_model.loaded, beta=spill_model.beta, instruction=None)
