"""The vLLM backend sizes its CPU KV cache from the model, not from the machine's memory.

On CPU, vLLM reserves ``gpu_memory_utilization`` (0.92) of *system* memory by default, so
``spill-guard score --backend vllm`` refused to start (or was OOM-killed) once anything else
used a few GiB. The unit tests check the sizing on config numbers (they run without vLLM);
the real one starts the CLI's engine while another process holds half the machine's memory.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spill_guard.errors import InvalidParameterError
from vllm_support import requires_vllm

# Imported inside the tests, so that the real test runs (and fails at its first check) on code without them.
GiB = 1 << 30
# The embedded SmolLM2-135M-Instruct: 30 layers, 3 KV heads of 64, fp32; vLLM's CPU block of 128 tokens.
SMOLLM2 = {"num_layers": 30, "num_kv_heads": 3, "head_dim": 64, "dtype_bytes": 4, "block_size": 128}
SMOLLM2_BLOCK = 128 * 30 * 2 * 3 * 64 * 4  # 5,898,240 bytes: K and V of every layer for one block


def test_kv_cache_bytes_holds_max_num_seqs_full_sequences_with_the_margin_and_null_block():
    from spill_guard.backends.vllm.engine import kv_cache_bytes

    # 4 sequences × ceil(2048 / 128) = 64 blocks; + 10 % = 70.4 -> 71; + the null block = 72 blocks
    got = kv_cache_bytes(**SMOLLM2, max_model_len=2048, max_num_seqs=4)
    assert got == 72 * SMOLLM2_BLOCK == 424_673_280
    # a length that is not a whole number of blocks rounds up per sequence: 2 × ceil(1000 / 128) = 16 -> 18 + 1
    assert kv_cache_bytes(**SMOLLM2, max_model_len=1000, max_num_seqs=2) == 19 * SMOLLM2_BLOCK
    assert kv_cache_bytes(**SMOLLM2, max_model_len=2048, max_num_seqs=4, margin=0.0) == 65 * SMOLLM2_BLOCK


def test_kv_cache_bytes_is_capped_for_vllms_cpu_defaults():
    from spill_guard.backends.vllm.engine import CPU_KV_CACHE_CAP_BYTES, kv_cache_bytes

    # vllm.LLM's CPU default of 256 sequences × the model's 8192 tokens would be 90+ GiB
    assert kv_cache_bytes(**SMOLLM2, max_model_len=8192, max_num_seqs=256) == CPU_KV_CACHE_CAP_BYTES == 2 * GiB
    assert kv_cache_bytes(**SMOLLM2, max_model_len=8192, max_num_seqs=256, cap_bytes=GiB) == GiB


def test_kv_cache_bytes_never_below_one_full_length_sequence():
    from spill_guard.backends.vllm.engine import CPU_KV_CACHE_CAP_BYTES, kv_cache_bytes

    # Llama-3-8B shape in bf16 at 128k tokens: one sequence is 1024 blocks of 16 MiB, far above the cap;
    # vLLM refuses to start without room for one max_model_len request, so the floor wins
    llama8b = {"num_layers": 32, "num_kv_heads": 8, "head_dim": 128, "dtype_bytes": 2, "block_size": 128}
    block = 128 * 32 * 2 * 8 * 128 * 2
    assert block == 16 * 2**20
    got = kv_cache_bytes(**llama8b, max_model_len=131072, max_num_seqs=256)
    assert got == (math.ceil(1024 * 1.1) + 1) * block == 1128 * block > CPU_KV_CACHE_CAP_BYTES


@pytest.mark.parametrize("name, value", [("num_layers", 0), ("head_dim", 64.0), ("max_model_len", None),
                                         ("block_size", True), ("max_num_seqs", -1)])
def test_kv_cache_bytes_refuses_numbers_that_are_not_positive_integers(name, value):
    from spill_guard.backends.vllm.engine import kv_cache_bytes

    numbers = {**SMOLLM2, "max_model_len": 2048, "max_num_seqs": 4, name: value}
    with pytest.raises(InvalidParameterError, match=name):
        kv_cache_bytes(**numbers)


def llama_config(**overrides):
    from transformers import LlamaConfig

    return LlamaConfig(**{"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
                          "hidden_size": 576, "max_position_embeddings": 8192, **overrides})


def test_cpu_kv_cache_options_size_from_the_model_config_and_engine_options():
    from spill_guard.backends.vllm.engine import cpu_kv_cache_options

    config = llama_config()
    got = cpu_kv_cache_options({"max_model_len": 2048, "max_num_seqs": 4, "seed": 0}, config, 4, 2048, {})
    assert got == {"max_model_len": 2048, "max_num_seqs": 4, "seed": 0, "kv_cache_memory_bytes": 424_673_280}
    # defaults: the context window given, vLLM's CPU max_num_seqs (256) -> the cap
    assert cpu_kv_cache_options({}, config, 4, 8192, {})["kv_cache_memory_bytes"] == 2 * GiB
    # an fp8 KV cache takes 1 byte per value; a bf16 model 2; the block size option is used
    assert cpu_kv_cache_options({"max_model_len": 2048, "max_num_seqs": 4, "kv_cache_dtype": "fp8"}, config, 4, 2048,
                                {})["kv_cache_memory_bytes"] == 72 * SMOLLM2_BLOCK // 4
    assert cpu_kv_cache_options({"max_model_len": 2048, "max_num_seqs": 4, "block_size": 64}, config, 2, 2048,
                                {})["kv_cache_memory_bytes"] == (math.ceil(128 * 1.1) + 1) * SMOLLM2_BLOCK // 4
    # no head_dim in the config: hidden_size / attention heads (576 / 9 = 64); no KV heads: the attention heads
    no_head_dim = llama_config()
    no_head_dim.head_dim = None
    assert cpu_kv_cache_options({"max_model_len": 2048, "max_num_seqs": 4}, no_head_dim, 4, 2048,
                                {})["kv_cache_memory_bytes"] == 424_673_280
    mha = llama_config(num_key_value_heads=None)
    assert cpu_kv_cache_options({"max_model_len": 2048, "max_num_seqs": 4}, mha, 4, 2048,
                                {})["kv_cache_memory_bytes"] == 3 * 424_673_280


@pytest.mark.parametrize("options, environ", [
    ({"kv_cache_memory_bytes": 123 * 2**20}, {}),
    ({"gpu_memory_utilization": 0.5}, {}),
    ({}, {"VLLM_CPU_KVCACHE_SPACE": "3"}),
])
def test_a_users_own_kv_cache_size_wins(options, environ):
    from spill_guard.backends.vllm.engine import cpu_kv_cache_options

    got = cpu_kv_cache_options(options, llama_config(), 4, 8192, environ)
    assert got == options  # nothing added (vLLM's CPU platform lets VLLM_CPU_KVCACHE_SPACE override the option)


def test_a_config_without_the_needed_numbers_says_how_to_size_the_cache():
    from transformers import PretrainedConfig

    from spill_guard.backends.vllm.engine import cpu_kv_cache_options

    with pytest.raises(InvalidParameterError, match="kv_cache_memory_bytes=BYTES"):
        cpu_kv_cache_options({}, PretrainedConfig(), 4, 8192, {})


def test_score_refuses_engine_options_with_the_transformers_backend(capsys):
    from spill_guard.cli.main import main

    assert main(["score", "What is 2+2?", "--engine-option", "max_model_len=1024"]) == 2
    assert "use them with --backend vllm" in capsys.readouterr().err


# -- the real engine, with half the machine's memory taken ----------------------------------------

HOLDER = r"""
import sys
n = int(sys.argv[1])
held = bytearray(n)
held[::4096] = b"\x01" * len(range(0, n, 4096))  # touch every page: the memory is really taken
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin or kills this process
"""


def meminfo() -> dict[str, int]:
    with open("/proc/meminfo") as fh:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}


@requires_vllm
@pytest.mark.model
@pytest.mark.parametrize("options, numbers, blocks", [
    ({}, {"max_model_len": 8192, "max_num_seqs": 256}, 364),  # the command: vLLM's defaults, the 2 GiB cap
    ({"max_model_len": 2048, "max_num_seqs": 4}, {"max_model_len": 2048, "max_num_seqs": 4}, 72),  # under the cap
])
def test_score_on_vllm_starts_while_another_process_holds_half_the_memory(options, numbers, blocks):
    info = meminfo()
    total, available = info["MemTotal"], info["MemAvailable"]
    # half the machine, leaving the engine (~2 GiB KV cache + ~1.5 GiB process) and others ~6 GiB
    hold = min(total // 2, available - 6 * GiB)
    if available - hold >= 0.92 * total or hold < GiB:
        pytest.skip(f"cannot take enough memory here ({available / GiB:.1f} of {total / GiB:.1f} GiB available)")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(hold)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        left = meminfo()["MemAvailable"]
        assert left < 0.92 * total  # what vLLM's default would reserve is no longer there
        env = {k: v for k, v in os.environ.items() if k not in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_ENABLE_V1_MULTIPROCESSING")}
        env["VLLM_LOGGING_LEVEL"] = "INFO"  # the KV cache sizing lines, on stderr (stdout is the JSON)
        started = time.monotonic()
        done = subprocess.run([str(Path(sys.executable).parent / "spill-guard"), "score", "What is the capital of France?",
                               "--backend", "vllm", "--json", "--max-new-tokens", "8",
                               *[f"--engine-option={k}={v}" for k, v in options.items()]],
                              capture_output=True, text=True, timeout=900, env=env)
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait(timeout=60)
    causes = [line for line in done.stderr.splitlines() if "Error:" in line]  # vLLM's root cause comes first
    assert done.returncode == 0, (f"{left / GiB:.1f} of {total / GiB:.1f} GiB available; failed after {elapsed:.0f} s:\n"
                                  + "\n".join(causes[:3]) + "\n...\n" + done.stderr[-1500:])
    answer = json.loads(done.stdout)
    assert answer["answer_ids"] and all(math.isfinite(v) for v in answer["spilled_energy"])

    # the KV cache vLLM reserved is the one computed from the model (30 layers, 3 KV heads of 64, fp32)
    from spill_guard.backends.vllm.engine import cpu_kv_cache_options, kv_cache_bytes
    from spill_guard.backends.vllm.loading import load_model_info

    loaded = load_model_info(None, max_model_len=options.get("max_model_len"))
    expected = cpu_kv_cache_options(options, loaded.model.config, loaded.dtype.itemsize, loaded.context_window, {})
    assert expected["kv_cache_memory_bytes"] == kv_cache_bytes(**SMOLLM2, **numbers)
    reserved = re.search(r"Explicitly set \(([\d.]+)/[\d.]+\) GiB for KV cache", done.stderr)
    assert reserved, done.stderr[-3000:]
    assert float(reserved.group(1)) == round(expected["kv_cache_memory_bytes"] / GiB, 2)
    tokens = re.search(r"KV cache size: ([\d,]+) tokens", done.stderr)
    assert tokens, done.stderr[-3000:]
    assert expected["kv_cache_memory_bytes"] // SMOLLM2_BLOCK == blocks  # vLLM allocates the whole blocks that fit
    assert int(tokens.group(1).replace(",", "")) == blocks * 128
