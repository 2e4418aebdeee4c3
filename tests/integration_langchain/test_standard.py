"""langchain-tests' standard chat-model suites, where they apply to a local, tool-less model.

Skipped with reasons: tool calling, structured output, JSON mode and multimodal inputs (the
model is text-only and has no tools: the suite's flags below turn those tests off);
``timeout``/``max_retries``/``api_key`` standard params (a local model has no API to time
out or retry, and the model forbids unknown fields so typos fail loudly).
"""

from __future__ import annotations

import functools
import inspect

import pytest

pytest.importorskip("langchain_tests", reason="pip install langchain-tests (the [test] extra)")

from langchain_tests.integration_tests import ChatModelIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import ChatModelUnitTests  # noqa: E402

from spill_guard_langchain import SpillChatModel  # noqa: E402


@functools.lru_cache(maxsize=1)
def _shared_model():
    # Class properties cannot take pytest fixtures; load once (the cached copy loads in < 1 s).
    from spill_guard import SpillModel

    return SpillModel.load(device="cpu")


class _Params:
    @property
    def chat_model_class(self) -> type[SpillChatModel]:
        return SpillChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"spill_model": _shared_model()}

    @property
    def standard_chat_model_params(self) -> dict:
        return {"temperature": 0, "max_tokens": 12, "stop": []}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False


class TestSpillChatModelUnit(_Params, ChatModelUnitTests):
    pass


@pytest.mark.model
class TestSpillChatModelIntegration(_Params, ChatModelIntegrationTests):
    pass


# langchain-tests' async tests are bare coroutines; pytest-asyncio (strict mode) runs only marked ones.
for _name in dir(TestSpillChatModelIntegration):
    _test = getattr(TestSpillChatModelIntegration, _name)
    if _name.startswith("test_") and inspect.iscoroutinefunction(_test):
        setattr(TestSpillChatModelIntegration, _name, pytest.mark.asyncio(_test))
