"""UQLM's white-box scorers run on a local model through the OpenAI-format logprobs we report.

uqlm 0.6.7 declares transformers<5 and numpy<2; it is installed with --no-deps (see the Makefile)
and runs here on transformers 5 / numpy 2. Offline: the scorers used need no extra model.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

uqlm = pytest.importorskip("uqlm", reason="pip install --no-deps uqlm==0.6.7 (make test does)")

from spill_guard_langchain import SpillChatModel  # noqa: E402

pytestmark = pytest.mark.model

PROMPTS = ["What is the capital of France?", "Who wrote Hamlet?"]
SINGLE = ["sequence_probability", "min_probability"]
TOP = ["min_token_negentropy", "mean_token_negentropy", "probability_margin"]


@pytest.fixture(scope="module")
def model(spill_model):
    return SpillChatModel(spill_model=spill_model, max_tokens=8, threshold=0.0)


def test_white_box_uq_returns_finite_scores_for_spill_chat_model_answers(model):
    scorer = uqlm.WhiteBoxUQ(llm=model, scorers=SINGLE + TOP, top_k_logprobs=5)
    result = asyncio.run(scorer.generate_and_score(PROMPTS, show_progress_bars=False))
    for name in SINGLE + TOP:
        values = result.data[name]
        assert len(values) == len(PROMPTS) and all(math.isfinite(v) for v in values), (name, values)
    assert all(0.0 <= v <= 1.0 for v in result.data["sequence_probability"] + result.data["min_probability"])


def test_reported_logprobs_are_the_raw_logit_log_softmax_of_the_answer(model):
    message = model.invoke(PROMPTS[0], logprobs=True, top_logprobs=3)
    scored = message.response_metadata["spill_guard"]
    content = message.response_metadata["logprobs"]["content"]
    visible = [i for i, tid in enumerate(scored["token_ids"]) if tid not in model.spill_model.loaded.stop_token_ids]
    assert len(content) == len(visible) >= 1
    for entry in content:
        assert entry["bytes"] == list(entry["token"].encode()) and len(entry["top_logprobs"]) == 3
        tops = [t["logprob"] for t in entry["top_logprobs"]]
        assert tops == sorted(tops, reverse=True) and entry["logprob"] <= tops[0] + 1e-4  # the best alternative bounds it
    # Mean log-probability from the report equals UQLM's length-normalised sequence probability.
    expected = math.exp(np.mean([c["logprob"] for c in content]))
    got = asyncio.run(uqlm.WhiteBoxUQ(scorers=["sequence_probability"]).score(
        logprobs_results=[content], show_progress_bars=False)).data["sequence_probability"][0]
    assert got == pytest.approx(expected, rel=1e-6)


def test_logprobs_are_off_unless_asked(spill_model):
    model = SpillChatModel(spill_model=spill_model, max_tokens=4, threshold=0.0)  # UQLM sets .logprobs on the shared one
    assert "logprobs" not in model.invoke(PROMPTS[0]).response_metadata
    with pytest.raises(ValueError, match="top_logprobs"):
        model.invoke(PROMPTS[0], top_logprobs=99)
