"""How a retry reaches the chat model deep inside a chain: a context variable.

A guarded runnable (or the agent middleware) re-runs the user's chain to get another
answer; the :class:`SpillChatModel` inside must then sample, or re-prompt, instead of
repeating its greedy answer. The chain is the user's and cannot be rebuilt, so the retry
settings travel in a :class:`contextvars.ContextVar`: LangChain copies the context into the
threads and tasks it runs steps in, so the setting reaches the model wherever it runs, and
it never leaks to other calls (each call has its own context).
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Iterator

from spill_guard.errors import InvalidParameterError
from spill_guard.policy import Reprompt, Resample


@dataclass(frozen=True)
class AttemptSettings:
    """Overrides for one retry attempt; ``None`` fields keep the model's own setting."""

    strategy: str
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    instruction: str | None = None  # appended to the last user message (Reprompt)


_current: contextvars.ContextVar[AttemptSettings | None] = contextvars.ContextVar(
    "spill_guard_langchain_attempt", default=None
)


def settings_for(strategy: object, attempt_number: int) -> AttemptSettings:
    """Translate a core retry strategy into overrides; seeds differ per attempt, so retries differ."""
    if isinstance(strategy, Resample):
        return AttemptSettings(strategy.name, temperature=strategy.temperature, top_p=strategy.top_p, seed=attempt_number)
    if isinstance(strategy, Reprompt):
        return AttemptSettings(strategy.name, instruction=strategy.instruction)
    raise InvalidParameterError(
        f"unknown retry strategy {strategy!r}; the LangChain integration supports Resample(...) and Reprompt(...)."
    )


def current_attempt() -> AttemptSettings | None:
    """The overrides of the retry attempt running in this context, if any."""
    return _current.get()


@contextlib.contextmanager
def attempt_context(settings: AttemptSettings | None) -> Iterator[None]:
    """Run a block (a chain invocation) with ``settings`` visible to every SpillChatModel in it."""
    token = _current.set(settings)
    try:
        yield
    finally:
        _current.reset(token)
