"""Fixtures for the LlamaIndex integration: guards with fixed thresholds, a real index, engines.

Thresholds at ±1e9 make "flagged" certain either way, so each policy's action is tested
without depending on where a 135M model's score happens to fall.
"""

from __future__ import annotations

import os
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("llama_index.core", reason="needs: pip install -e integrations/llama_index[test]")

from li_support import ALWAYS, DOCS, MAX_NEW, NEVER  # noqa: E402,F401


@pytest.fixture(scope="session")
def make_llm(spill_model):
    from spill_guard import SpillGuard
    from spill_guard_llama_index import SpillLLM

    def make(threshold: float = NEVER, **guard_kwargs):
        return SpillLLM(SpillGuard(spill_model, threshold=threshold, max_new_tokens=MAX_NEW, **guard_kwargs))

    return make


@pytest.fixture(scope="session")
def llm(make_llm):
    return make_llm()


@pytest.fixture(scope="session")
def index(spill_model):
    from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter

    from spill_guard_llama_index import MiniLMEmbedding

    Settings.tokenizer = spill_model.tokenizer.encode  # no tiktoken files needed
    docs = SimpleDirectoryReader(str(DOCS), required_exts=[".md"]).load_data()
    return VectorStoreIndex.from_documents(
        docs, embed_model=MiniLMEmbedding(), transformations=[SentenceSplitter(chunk_size=128, chunk_overlap=16)]
    )


@pytest.fixture()
def captured_events():
    """Every SpillScoredEvent dispatched while the test runs (handler on the root dispatcher)."""
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler

    from spill_guard_llama_index import SpillScoredEvent

    class Capture(BaseEventHandler):
        events: list = []

        def handle(self, event, **kwargs):
            if isinstance(event, SpillScoredEvent):
                self.events.append(event)

    handler = Capture(events=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    yield handler.events
    root.event_handlers = [h for h in root.event_handlers if h is not handler]
