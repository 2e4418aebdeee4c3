"""Run a core policy over LangChain outputs: candidates, the final verdict, and the async bridge.

Policies are synchronous (``Retry`` loops with tenacity). In async code the policy runs in a
worker thread and each regeneration is scheduled back on the event loop, so the user's
chain still runs natively async and the loop is never blocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from spill_guard.guard import Verdict
from spill_guard.guard.judge import attempts_of
from spill_guard.guard.verdict import attach_scored
from spill_guard.policy import Candidate, Decision, Policy, RetryStrategy, apply_policy
from spill_guard_langchain.attempt import AttemptSettings, attempt_context


def candidate_from(verdict: Verdict, output: Any, strategy: str) -> Candidate:
    """A policy candidate for one attempt; the payload keeps the attempt's output and verdict."""
    scored = verdict.scored
    return Candidate(
        verdict.original_answer,
        verdict.score,
        verdict.flagged,
        strategy,
        verdict.reason,
        payload=(output, verdict),
        prompt_ids=tuple(scored.prompt_ids) if scored is not None else (),
    )


def final_verdict(decision: Decision) -> Verdict:
    """The chosen attempt's verdict, updated with the policy's action, shown text and every attempt, and the
    first answer's second opinion (if it got one), as the library's verdict carries it."""
    _, verdict = decision.chosen.payload
    _, first = decision.attempts[0].payload
    updated = verdict.model_copy(
        update={
            "action": decision.action,
            "answer": decision.shown,
            "attempts": attempts_of(decision),
            "second_opinion": first.second_opinion,
        }
    )
    return attach_scored(updated, verdict.scored)


def decide(policy: Policy, first: Candidate, run_attempt: Callable[[AttemptSettings], Candidate]) -> Decision:
    """Apply ``policy``; a retry runs ``run_attempt`` with the strategy's settings in context."""

    def regenerate(strategy: RetryStrategy, number: int) -> Candidate:
        settings = AttemptSettings(strategy, number)
        with attempt_context(settings):
            return run_attempt(settings)

    return apply_policy(policy, first, regenerate)


async def adecide(
    policy: Policy, first: Candidate, run_attempt: Callable[[AttemptSettings], Awaitable[Candidate]]
) -> Decision:
    """Async :func:`decide`: the policy loop in a thread, each attempt awaited on this loop."""
    loop = asyncio.get_running_loop()

    def regenerate(strategy: RetryStrategy, number: int) -> Candidate:
        settings = AttemptSettings(strategy, number)

        async def attempt() -> Candidate:
            with attempt_context(settings):  # set inside the task, so it reaches the chain's steps
                return await run_attempt(settings)

        return asyncio.run_coroutine_threadsafe(attempt(), loop).result()

    return await asyncio.to_thread(apply_policy, policy, first, regenerate)
