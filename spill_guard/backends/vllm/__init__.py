"""The vLLM backend: exact spilled energy from vLLM's raw logits (docs/vllm.md).

:class:`VllmBackend` (offline ``vllm.LLM``) and :class:`AsyncVllmBackend` (``AsyncLLM``) implement
the backend contract; ``SpillModel.load(backend="vllm")`` / ``AsyncSpillModel.load()`` wrap them.
Importing this package does not import vllm; the engine-side modules
(:mod:`~spill_guard.backends.vllm.processor`, :mod:`~spill_guard.backends.vllm.worker`)
are loaded by vLLM itself from the names in :func:`engine_kwargs`.
"""

from spill_guard.backends.vllm.backend import AsyncVllmBackend, VllmBackend
from spill_guard.backends.vllm.engine import PROCESSOR, WORKER_EXTENSION, engine_kwargs
from spill_guard.backends.vllm.params import VllmParams
from spill_guard.backends.vllm.requests import UnsupportedSamplingError

__all__ = [
    "AsyncVllmBackend",
    "PROCESSOR",
    "UnsupportedSamplingError",
    "VllmBackend",
    "VllmParams",
    "WORKER_EXTENSION",
    "engine_kwargs",
]
