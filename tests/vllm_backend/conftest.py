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

from vllm_support import ENGINE_OPTIONS  # noqa: E402


@pytest.fixture(scope="session")
def vllm_model():
    """A SpillModel on the vLLM backend (embedded model), capturing β = 1 and 0.5."""
    from spill_guard import SpillModel
    from spill_guard.cli.common import quiet_transformers

    quiet_transformers()
    model = SpillModel.load(backend="vllm", extra_betas=(0.5,), engine_options=ENGINE_OPTIONS)
    yield model
    model.close()


@pytest.fixture(scope="session")
def reference_model():
    """The same weights on transformers (teacher-forced reference), capturing β = 1 and 0.5."""
    from spill_guard import SpillModel
    from spill_guard.cli.common import quiet_transformers

    quiet_transformers()
    return SpillModel.load(device="cpu", extra_betas=(0.5,))


def pytest_sessionfinish(session, exitstatus):
    session.config._spill_guard_exitstatus = int(exitstatus)


def pytest_unconfigure(config):
    """Exit with pytest's status once it has reported, without waiting for vLLM's leftovers.

    After every engine was shut down, a run of several vLLM test files was seen to hang at
    interpreter exit twice (threads of the in-process engines' gloo/ZMQ setup that never
    end). The results are already printed at this point; only the interpreter's own
    teardown is skipped. Nothing happens where vLLM was not imported.
    """
    import sys

    if "vllm" not in sys.modules or not hasattr(config, "_spill_guard_exitstatus"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config._spill_guard_exitstatus)
