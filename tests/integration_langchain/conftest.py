"""Fixtures for the LangChain integration tests (skipped when the package is not installed)."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core", reason="LangChain integration not installed: pip install -e 'integrations/langchain[test]'")


@pytest.fixture(scope="session")
def chat_model(spill_model):
    """The chat model over the session's real embedded model, with the packaged calibration."""
    from spill_guard_langchain import SpillChatModel

    return SpillChatModel(spill_model=spill_model, max_tokens=24)

