"""How a retry reaches the model deep inside a chain: the core's attempt scope.

A guarded runnable (or the agent middleware) re-runs the user's chain to get another
answer; the model inside must then sample, or re-prompt, instead of repeating its greedy
answer. The chain is the user's and cannot be rebuilt, so the attempt travels in the core's
context variable (:mod:`spill_guard.policy.attempt_scope`): LangChain copies the context into
the threads and tasks it runs steps in, so it reaches the model wherever it runs, and never
leaks to other calls. Two kinds of model read it, the same scope:

- :class:`SpillChatModel` applies the attempt's strategy to its own prompt and params;
- a ``ChatHuggingFace`` / ``HuggingFacePipeline`` watched by ``SpillCallbackHandler(model=...)``:
  the core's drop-in regenerates the user's torch model with the attempt's prompt and sampling
  (:class:`spill_guard.guard.dropin.DropIn`).

The names here are the core's (kept for code that imported them from this module):
:class:`AttemptSettings` is :class:`~spill_guard.policy.attempt_scope.RetryAttempt`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from spill_guard.policy.attempt_scope import RetryAttempt, current_attempt, using_attempt

__all__ = ["AttemptSettings", "attempt_context", "current_attempt"]

#: One retry attempt: the core strategy and the attempt number (2, 3, ...).
AttemptSettings = RetryAttempt


@contextlib.contextmanager
def attempt_context(settings: AttemptSettings | None) -> Iterator[None]:
    """Run a block (a chain invocation) with ``settings`` as the current attempt of every model in it."""
    with using_attempt(settings):
        yield
