"""Fixtures of the vLLM backend tests (run by ``make test`` in .venv-vllm; see the Makefile).

In the main environment vllm is not installed and these tests skip with that reason. The
engines run in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) with a 1 GiB CPU KV cache
and eager mode (vLLM's graph compilation takes minutes on 2 cores).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

#: Engine settings shared by the tests: small context (KV memory), fixed seed, eager.
ENGINE_OPTIONS = {"max_model_len": 1024, "seed": 0, "enforce_eager": True, "max_num_seqs": 32}


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


requires_vllm = pytest.mark.skipif(
    not vllm_available(),
    reason="vllm is not installed in this environment; `make test` runs tests/vllm in .venv-vllm (make install-vllm)",
)


@pytest.fixture(scope="session")
def vllm_model():
    """A VllmSpillModel on the embedded model, capturing β = 1 and 0.5."""
    from spill_guard.backends.vllm import VllmSpillModel
    from spill_guard.cli.common import quiet_transformers

    quiet_transformers()
    model = VllmSpillModel.load(extra_betas=(0.5,), engine_options=ENGINE_OPTIONS)
    yield model
    model.llm.llm_engine.engine_core.shutdown()


@pytest.fixture(scope="session")
def reference_model():
    """The same weights on transformers (teacher-forced reference), capturing β = 1 and 0.5."""
    from spill_guard import SpillModel
    from spill_guard.cli.common import quiet_transformers

    quiet_transformers()
    return SpillModel.load(device="cpu", extra_betas=(0.5,))
