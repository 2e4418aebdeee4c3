"""The vLLM backend: exact spilled energy from vLLM's raw logits (docs/vllm.md).

Importing this package does not import vllm; the engine-side modules
(:mod:`~spill_guard.backends.vllm.processor`, :mod:`~spill_guard.backends.vllm.worker`)
are loaded by vLLM itself from the names in :func:`engine_kwargs`.
"""

from spill_guard.backends.vllm.async_model import AsyncVllmSpillModel
from spill_guard.backends.vllm.engine import PROCESSOR, WORKER_EXTENSION, engine_kwargs
from spill_guard.backends.vllm.model import VllmSpillModel
from spill_guard.backends.vllm.requests import UnsupportedSamplingError

__all__ = ["AsyncVllmSpillModel", "PROCESSOR", "UnsupportedSamplingError", "VllmSpillModel", "WORKER_EXTENSION",
           "engine_kwargs"]
