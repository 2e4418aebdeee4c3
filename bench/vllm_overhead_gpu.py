"""GPU section of ``bench/vllm_overhead.py``: a Llama-3-8B-shaped model with random weights on vLLM.

Runs only where ``torch.cuda.is_available()`` (a CUDA build of vLLM); elsewhere it is recorded
as skipped. No download: the folder holds a ``LlamaConfig`` of the Llama-3-8B shape and a
synthetic word-level tokenizer of the same 128,256 ids, and vLLM fills the weights itself
(``load_format="dummy"``). One engine serves both arms, so a single 16 GB copy of the weights
fits the card: ``plain`` sends requests without capture (the processor sees no captured row
and returns at once), ``capture_auto`` is the guarded call (capture, z_(T+1), fetch, trace and
ScoredAnswer). Random prompts and weights make greedy answers run to the limit (the stop id is
one of 128,256), so nearly every answer pays the z_(T+1) step (about 1/(T+1) of its decoding). The same code runs on CPU with a tiny
shape in the tests (``tests/vllm_backend/test_vllm_overhead_bench.py``), so its logic is covered here.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from throughput_ratios import summarize

#: Llama-3-8B: 32 layers, 4096 hidden, GQA 32/8 heads, 14336 MLP, 128,256-token vocabulary.
LLAMA3_8B = dict(vocab_size=128256, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, intermediate_size=14336, max_position_embeddings=8192,
                 rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)


def write_random_model(folder: Path, shape: dict[str, Any]) -> Path:
    """A loadable model folder without weights: config, generation config and a synthetic tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GenerationConfig, LlamaConfig, PreTrainedTokenizerFast

    vocab = int(shape["vocab_size"])
    LlamaConfig(**shape, bos_token_id=0, eos_token_id=1, pad_token_id=1).save_pretrained(folder)
    GenerationConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1).save_pretrained(folder)
    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w2"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    words.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    PreTrainedTokenizerFast(tokenizer_object=words, bos_token="w0", eos_token="w1", pad_token="w1",
                            unk_token="w2").save_pretrained(folder)
    return folder


def section(*, batches: list[int], repeats: int, max_new_tokens: int, prompt_tokens: int, log: Callable[[str], None],
            shape: dict[str, Any] = LLAMA3_8B, dtype: str = "bfloat16", require_cuda: bool = True,
            engine_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Interleaved plain / capture_auto throughput on one engine; ``require_cuda=False`` runs anywhere."""
    if require_cuda and not torch.cuda.is_available():
        log("GPU section skipped: torch.cuda.is_available() is False on this machine; no numbers recorded.")
        return {"skipped": True, "reason": "torch.cuda.is_available() is False (no CUDA device / CPU vLLM build)"}
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from spill_guard import SpillModel

    with tempfile.TemporaryDirectory(prefix="spill-guard-random-llama-") as tmp:
        folder = write_random_model(Path(tmp), shape)
        options = {"load_format": "dummy", "seed": 0, "max_model_len": prompt_tokens + max_new_tokens + 8,
                   "max_num_seqs": max(batches), **(engine_options or {})}
        started = time.perf_counter()
        guarded = SpillModel.load(str(folder), backend="vllm", dtype=dtype, engine_options=options, instruction=None)
        build_s = time.perf_counter() - started
    try:
        gen = torch.Generator().manual_seed(0)
        vocab = int(shape["vocab_size"])
        prompts = torch.randint(3, vocab, (max(batches), prompt_tokens), generator=gen).tolist()
        plain_params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0,
                                      stop_token_ids=guarded.loaded.stop_token_ids)

        def plain(batch: list[list[int]]) -> list[list[int]]:
            outs = guarded.backend.llm.generate([TokensPrompt(prompt_token_ids=p) for p in batch], plain_params, use_tqdm=False)
            return [list(o.outputs[0].token_ids) for o in outs]

        def capture_auto(batch: list[list[int]]) -> list[list[int]]:
            answers = guarded.generate_from_ids(batch, max_new_tokens=max_new_tokens, stats="energy",
                                                final_step="auto")
            return [list(a.answer_ids) for a in answers]

        arms = {"plain": plain, "capture_auto": capture_auto}
        out: dict[str, Any] = {"model": "LlamaForCausalLM (config only), vLLM load_format='dummy' random weights",
                               "shape": dict(shape), "dtype": dtype, "engine_build_s": round(build_s, 1),
                               "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                               "prompt": f"{prompt_tokens} random token ids per row", "max_new_tokens": max_new_tokens,
                               "batches": {}}
        for b in batches:
            warm = {arm: run(prompts[:b]) for arm, run in arms.items()}  # warm-up; greedy: same tokens expected
            samples: dict[str, list[float]] = {arm: [] for arm in arms}
            for rep in range(repeats):
                for arm in (("plain", "capture_auto") if rep % 2 == 0 else ("capture_auto", "plain")):
                    t = time.perf_counter()
                    tokens = sum(len(a) for a in arms[arm](prompts[:b]))
                    samples[arm].append(tokens / (time.perf_counter() - t))
            out["batches"][str(b)] = {"wall": summarize(samples),
                                      "identical_answers": warm["plain"] == warm["capture_auto"]}
            log(f"GPU section batch {b}: capture_auto/plain throughput "
                f"{out['batches'][str(b)]['wall']['capture_auto']['ratio']:.3f}")
        stats = guarded.backend.store_stats()
        out["store_after_run"] = stats
        out["extra_memory_bytes"] = {"capture_ring": stats["capacity"] * guarded.backend.columns.width * 4}
        return out
    finally:
        guarded.close()
