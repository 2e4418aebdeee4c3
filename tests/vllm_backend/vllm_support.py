"""Helpers of the vLLM backend tests (a module, not conftest, so test files can import it)."""

from __future__ import annotations

import importlib.util

import pytest

#: Engine settings shared by the tests: small context (KV memory), fixed seed, eager.
ENGINE_OPTIONS = {"max_model_len": 1024, "seed": 0, "enforce_eager": True, "max_num_seqs": 32}


def vllm_available() -> bool:
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    return spec is not None and spec.origin is not None  # a namespace package named vllm is not vLLM


requires_vllm = pytest.mark.skipif(
    not vllm_available(),
    reason="vllm is not installed in this environment; `make test` runs tests/vllm_backend in .venv-vllm (make install-vllm)",
)
