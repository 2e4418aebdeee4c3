"""Shared fixtures. The embedded model is loaded once per session (cached copy: < 1 s)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def spill_model():
    from spill_guard.cli.common import quiet_transformers
    from spill_guard import SpillModel

    quiet_transformers()
    return SpillModel.load(device="cpu")
