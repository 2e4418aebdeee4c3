"""The retry attempt running in this context: how a retry reaches a model the door does not call itself.

A door that cannot hand the attempt's prompt and params to its model directly (LangChain's
guarded runnable re-runs the user's whole chain; the model answering inside it is the user's)
runs the attempt inside :func:`attempt_scope`. Whatever generates inside the chain reads
:func:`current_attempt` and applies the strategy to its own prompt and params with
:meth:`~spill_guard.policy.strategies.Resample.next_attempt`, the call every door makes:
``SpillChatModel`` does, and so does the core's drop-in
(:class:`spill_guard.guard.dropin.DropIn`), which regenerates the user's unmodified torch model.

The scope is a :class:`contextvars.ContextVar`: frameworks copy the context into the threads
and tasks they run steps in (LangChain's executors, asyncio tasks), so the attempt reaches the
model wherever it runs, and never leaks to other calls (each call has its own context).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

from spill_guard.errors import InvalidParameterError
from spill_guard.policy.base import RetryStrategy

__all__ = ["RetryAttempt", "attempt_scope", "current_attempt", "using_attempt"]


@dataclass(frozen=True, eq=False)
class RetryAttempt:
    """One retry attempt: the strategy that makes it and its number (2, 3, ...).

    Compared by identity: two attempts of two calls are different attempts even with the same
    strategy and number (the drop-in matches what was announced inside *this* attempt).
    """

    strategy: RetryStrategy
    number: int

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or not isinstance(self.number, int) or self.number < 2:
            raise InvalidParameterError(
                f"a retry attempt's number is an integer >= 2 (the first answer is 1), got {self.number!r}."
            )
        if not callable(getattr(self.strategy, "next_attempt", None)):
            raise InvalidParameterError(
                f"a retry strategy needs a next_attempt(prompt, params, attempt) method "
                f"(Resample(...), Reprompt(...)), got {self.strategy!r}."
            )

    @property
    def name(self) -> str:
        """The strategy's name, as the verdict's attempts list it."""
        return str(self.strategy.name)


_current: contextvars.ContextVar[RetryAttempt | None] = contextvars.ContextVar(
    "spill_guard_retry_attempt", default=None
)


def current_attempt() -> RetryAttempt | None:
    """The retry attempt running in this context (``None``: a first answer, or no guarded call)."""
    return _current.get()


@contextlib.contextmanager
def using_attempt(attempt: RetryAttempt | None) -> Iterator[RetryAttempt | None]:
    """Run a block with ``attempt`` as the current attempt (``None``: outside any attempt)."""
    if attempt is not None and not isinstance(attempt, RetryAttempt):
        raise InvalidParameterError(f"attempt must be a RetryAttempt or None, got {attempt!r}.")
    token = _current.set(attempt)
    try:
        yield attempt
    finally:
        _current.reset(token)


@contextlib.contextmanager
def attempt_scope(strategy: RetryStrategy, number: int) -> Iterator[RetryAttempt]:
    """Run a block (a chain's re-run) as retry attempt ``number`` made by ``strategy``."""
    attempt = RetryAttempt(strategy, number)
    with using_attempt(attempt):
        yield attempt
