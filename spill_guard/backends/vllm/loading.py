"""Model facts the vLLM backend needs without loading the weights into transformers.

The weights live in vLLM; spill_guard still needs the tokenizer (prompts, offsets), the stop
tokens and the context window. :class:`~spill_guard.models.LoadedModel` computes those from a
model's ``config`` and ``generation_config``, so the vLLM backend hands it just those two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from spill_guard.errors import InvalidParameterError
from spill_guard.models.device import resolve_dtype
from spill_guard.models.loader import LoadedModel, _resolve_source


@dataclass
class ConfigOnly:
    """Stands in for the transformers model: only what :class:`LoadedModel` reads from it."""

    config: Any
    generation_config: Any


@dataclass
class VllmLoadedModel(LoadedModel):
    """A :class:`LoadedModel` whose weights are in a vLLM engine (``model`` holds configs only)."""

    source: str = ""  # the folder (or hub id) vLLM loads
    max_model_len: int | None = None

    @property
    def context_window(self) -> int:
        return int(self.max_model_len or super().context_window)

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)


def load_model_info(
    name_or_path: str | None, *, dtype: str = "auto", max_model_len: int | None = None
) -> VllmLoadedModel:
    """Tokenizer and configs of a model (embedded name, folder, .gguf or hub id) for vLLM."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from spill_guard.models.embedded import DEFAULT_MODEL

    name = str(name_or_path) if name_or_path is not None else DEFAULT_MODEL
    source = _resolve_source(name)  # GGUF files are converted once to a safetensors folder vLLM can read
    config = AutoConfig.from_pretrained(source)
    try:
        generation = GenerationConfig.from_pretrained(source)
    except OSError:
        generation = GenerationConfig.from_model_config(config)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    resolved = resolve_dtype(dtype, torch.device("cpu")) if dtype == "auto" else resolve_dtype(dtype)
    if max_model_len is not None and (not isinstance(max_model_len, int) or max_model_len < 2):
        raise InvalidParameterError(f"max_model_len must be an integer >= 2, got {max_model_len!r}.")
    return VllmLoadedModel(
        model=ConfigOnly(config, generation),
        tokenizer=tokenizer,
        name=name,
        device=torch.device("cpu"),
        dtype=resolved,
        source=source,
        max_model_len=max_model_len,
    )


def vllm_dtype(dtype: torch.dtype) -> str:
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
