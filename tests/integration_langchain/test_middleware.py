"""SpillGuardMiddleware in a real LangChain v1 agent (create_agent, no tools)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("langchain.agents.middleware", reason="needs langchain v1: pip install 'langchain>=1'")

from langchain.agents import create_agent  # noqa: E402

from spill_guard.guard import HallucinationDetected  # noqa: E402
from spill_guard.policy import Abstain, Flag, Raise, Resample, Retry  # noqa: E402
from spill_guard_langchain import SpillChatModel, SpillGuardMiddleware  # noqa: E402

pytestmark = pytest.mark.model

ASK = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}


def _agent(spill_model, threshold, policy):
    middleware = SpillGuardMiddleware(policy)
    model = SpillChatModel(spill_model=spill_model, threshold=threshold, max_tokens=10)
    return create_agent(model, tools=[], middleware=[middleware]), middleware


def test_flag_and_abstain(spill_model):
    agent, mw = _agent(spill_model, 100.0, Flag())
    assert "Paris" in agent.invoke(ASK)["messages"][-1].content and mw.verdicts[-1].action.value == "passed"
    agent, mw = _agent(spill_model, -100.0, Abstain("Not sure."))
    last = agent.invoke(ASK)["messages"][-1]
    assert last.content == "Not sure." and last.response_metadata["spill_guard"]["verdict"]["action"] == "abstained"


def test_retry_and_raise(spill_model):
    agent, mw = _agent(spill_model, -100.0, Retry(attempts=2, strategy=Resample(0.9), fallback=Abstain("no")))
    assert agent.invoke(ASK)["messages"][-1].content == "no"
    assert [a.strategy for a in mw.verdicts[-1].attempts] == ["greedy", "resample@0.9"]
    agent, _ = _agent(spill_model, -100.0, Raise())
    with pytest.raises(HallucinationDetected):
        agent.invoke(ASK)


def test_async_agent(spill_model):
    agent, mw = _agent(spill_model, -100.0, Retry(attempts=2, strategy=Resample(0.9), fallback=Abstain("no")))
    assert asyncio.run(agent.ainvoke(ASK))["messages"][-1].content == "no"
    assert len(mw.verdicts[-1].attempts) == 2
