"""The cached safetensors copy of the embedded GGUF model must give identical logits."""

from __future__ import annotations

import pytest
import torch

from spill_guard.models.embedded import smollm2_gguf
from spill_guard.models.loader import converted_gguf, load_gguf

pytestmark = pytest.mark.model


def test_cached_copy_gives_identical_logits(spill_model):
    gguf_model, gguf_tokenizer = load_gguf(smollm2_gguf())  # the slow, de-quantising path
    cached = spill_model.loaded
    assert cached.name == "smollm2-135m-instruct"
    text = "The capital of Italy is Rome. 12 + 30 = 42."
    ids = torch.tensor([gguf_tokenizer(text)["input_ids"]])
    assert ids.tolist() == [cached.tokenizer(text)["input_ids"]]
    with torch.no_grad():
        assert torch.equal(gguf_model(ids).logits, cached.model(ids).logits)
    assert gguf_tokenizer.chat_template == cached.tokenizer.chat_template
    assert (converted_gguf(smollm2_gguf()) / "model.safetensors").is_file()
