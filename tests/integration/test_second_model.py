"""Cross-model check on base Gemma 3 270M (sliding-window attention, no chat template)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def gemma():
    from spill_guard import SpillModel

    return SpillModel.load("gemma3-270m", device="cpu")


def test_gemma_streaming_equals_teacher_forced_and_plain_forward(gemma):
    assert not gemma.tokenizer.chat_template  # base model: the plain Question/Answer frame is used
    prompts = ["What is the capital of France?", "What is 3 + 4?"]
    answers = gemma.generate(prompts, max_new_tokens=12)
    forced = gemma.score_ids([a.prompt_ids for a in answers], [a.answer_ids for a in answers])
    for stream, tf in zip(answers, forced):
        ids = torch.tensor([stream.prompt_ids + stream.answer_ids])
        with torch.no_grad():
            logits = gemma.loaded.model(ids).logits[0].double()
        p = len(stream.prompt_ids)
        delta = [
            float(torch.logsumexp(logits[p + t], -1) - logits[p - 1 + t, tok]) for t, tok in enumerate(stream.answer_ids)
        ]
        np.testing.assert_allclose(stream.spilled_energy, delta, atol=3e-4)
        np.testing.assert_allclose(tf.spilled_energy, delta, atol=3e-4)
        np.testing.assert_allclose(stream.trace.jsd_next, tf.trace.jsd_next, atol=1e-4)
