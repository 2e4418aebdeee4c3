"""Shared fixtures. The embedded model is loaded once per session (cached copy: < 1 s)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def torch_single_thread():
    """One torch thread for a module of tiny-model tests: intra-op threading only adds overhead to
    tiny matmuls (x100 on a loaded 2-core box). Restored after the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def spill_model():
    from spill_guard.cli.common import quiet_transformers
    from spill_guard import SpillModel

    quiet_transformers()
    return SpillModel.load(device="cpu")


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server on 127.0.0.1 for the session (tests/postgres_support.py).

    Skips, with the reason, where no server can run (binaries missing, no unprivileged user).
    """
    import contextlib

    from postgres_support import PostgresUnavailable, running_postgres

    stack = contextlib.ExitStack()
    try:
        server = stack.enter_context(running_postgres())
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")
    with stack:
        yield server


@pytest.fixture
def postgres_log_url(postgres_server):
    """``postgresql://…#t_<random>``: a review log in a table no other test uses."""
    return postgres_server.fresh_log_url()
