"""The GPU section of bench/vllm_overhead.py, run on CPU with a tiny random-weight Llama.

On a GPU machine the section builds a Llama-3-8B-shaped model from a config alone (vLLM's
``load_format="dummy"``) with a synthetic tokenizer; here the same code runs with a tiny shape
(head_dim 64, which CPU attention supports), so a broken section shows up before anyone has a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vllm_support import requires_vllm

pytestmark = requires_vllm

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

TINY = dict(vocab_size=1024, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            intermediate_size=256, max_position_embeddings=256, rope_theta=10000.0, rms_norm_eps=1e-5,
            tie_word_embeddings=False)


def test_random_model_folder_loads_without_weights_and_its_tokenizer_covers_every_id(tmp_path):
    from transformers import AutoConfig, AutoTokenizer
    from vllm_overhead_gpu import LLAMA3_8B, write_random_model

    write_random_model(tmp_path, LLAMA3_8B)
    config, tokenizer = AutoConfig.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    assert (config.vocab_size, config.hidden_size, config.num_key_value_heads) == (128256, 4096, 8)
    assert len(tokenizer) == 128256 and tokenizer.decode([5, 128255]) == "w5 w128255"
    assert not list(tmp_path.glob("*.safetensors"))  # nothing to download or store: vLLM makes the weights


def test_gpu_section_logic_runs_on_cpu_with_a_tiny_shape():
    from vllm_overhead_gpu import section

    logged = []
    result = section(batches=[1, 2], repeats=2, max_new_tokens=4, prompt_tokens=8, log=logged.append, shape=TINY,
                     dtype="float32", require_cuda=False)
    assert set(result["batches"]) == {"1", "2"}
    for row in result["batches"].values():
        assert row["identical_answers"] is True  # the capture observes, never steers
        assert set(row["wall"]) == {"plain", "capture_auto"} and row["wall"]["plain"]["ratio"] == 1.0
        assert len(row["wall"]["capture_auto"]["tokens_per_s"]) == 2 and row["wall"]["capture_auto"]["median"] > 0
    assert result["store_after_run"]["holding"] == 0
    assert len(logged) == 2


def test_gpu_section_is_recorded_as_skipped_without_cuda():
    import torch
    from vllm_overhead_gpu import section

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the section runs for real in bench/vllm_overhead.py")
    logged = []
    result = section(batches=[1], repeats=1, max_new_tokens=4, prompt_tokens=8, log=logged.append)
    assert result["skipped"] is True and "cuda" in result["reason"].lower() and logged
