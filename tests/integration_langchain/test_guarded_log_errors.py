"""LangChain's wrappers record final verdicts through the core's one VerdictLog (on_log_error honoured)."""

from __future__ import annotations

import warnings

import pytest
from langchain_core.messages import HumanMessage

from spill_guard import Flag
from spill_guard.guard.verdict import VerdictNotLoggedError, VerdictNotLoggedWarning
from spill_guard_langchain import SpillGuardedRunnable

pytestmark = pytest.mark.model


class BrokenSink:
    def __init__(self):
        self.calls = 0

    def write(self, record):
        self.calls += 1
        raise OSError(28, "No space left on device")


def test_a_failed_write_raises_verdict_not_logged_with_the_verdict(chat_model):
    sink = BrokenSink()
    guarded = SpillGuardedRunnable(chat_model, Flag(), log=sink, log_all=True)
    with pytest.raises(VerdictNotLoggedError) as err:
        guarded.invoke([HumanMessage("What is the capital of France?")])
    assert sink.calls == 1
    assert err.value.verdict.question == "What is the capital of France?" and err.value.verdict.record_id is None
    assert isinstance(err.value.__cause__, OSError)


def test_on_log_error_warn_returns_the_output(chat_model):
    guarded = SpillGuardedRunnable(chat_model, Flag(), log=BrokenSink(), log_all=True, on_log_error="warn",
                                   include_verdict=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = guarded.invoke([HumanMessage("What is the capital of France?")])
    assert out.verdict.record_id is None and out.output.content
    assert any(issubclass(w.category, VerdictNotLoggedWarning) for w in caught)
