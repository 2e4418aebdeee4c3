"""What one SpillLLM call produced, and how engines get hold of it.

LlamaIndex engines call the LLM deep inside their own code and return only text, so a
guarded engine cannot receive the :class:`ScoredAnswer` through the call chain. Instead it
opens a :func:`collect` scope (a context variable): every generation the SpillLLM makes
inside that scope is appended to the scope's collector. Context variables are copied into
asyncio tasks and ``asyncio.to_thread`` calls, so concurrent queries — threads or tasks —
each see only their own generations.

(Generations running at once on one model are kept apart by the core: its capture routes
each forward pass to the capture of the calling thread.)
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from spill_guard import ScoredAnswer
from spill_guard.guard.verdict import Verdict
from spill_guard.models.params import GenerationParams

Message = dict[str, str]


@dataclass(frozen=True)
class Generation:
    """One answer of a SpillLLM call (or of an instrumented HuggingFaceLLM): the conversation it
    answered, its score and verdict.

    ``verdict`` applies the guard's threshold (never its policy: an LLM returns what the model
    said; engines enforce). ``question`` is the last user message, the text the answer-span
    locator was given. ``params`` are the call's generation settings.

    ``kind`` says how the conversation was asked: ``"chat"`` (``messages`` as given to ``chat``),
    or ``"text"`` (a completion: ``messages`` holds one user turn with the prompt text, which was
    passed with ``formatted``). An instrumented HuggingFaceLLM's generation with no ``messages``
    (a conversation the core cannot represent) cannot be re-asked.
    """

    messages: tuple[Message, ...]
    question: str
    scored: ScoredAnswer
    verdict: Verdict
    strategy: str = "greedy"
    params: GenerationParams = field(default_factory=GenerationParams)
    kind: str = "chat"
    formatted: bool = False


class Collector:
    """Generations made inside one :func:`collect` scope, in order (thread-safe appends)."""

    def __init__(self) -> None:
        self._items: list[Generation] = []
        self._lock = threading.Lock()

    def add(self, generation: Generation) -> None:
        with self._lock:
            self._items.append(generation)

    @property
    def generations(self) -> list[Generation]:
        with self._lock:
            return list(self._items)


_ACTIVE: contextvars.ContextVar[Collector | None] = contextvars.ContextVar(
    "spill_guard_llama_index_collector", default=None
)


@contextlib.contextmanager
def collect() -> Iterator[Collector]:
    """Collect every SpillLLM generation made in this context (nested scopes each get their own)."""
    collector = Collector()
    token = _ACTIVE.set(collector)
    try:
        yield collector
    finally:
        _ACTIVE.reset(token)


def collecting() -> bool:
    """True inside a :func:`collect` scope (a guarded engine will decide, and log, the answer)."""
    return _ACTIVE.get() is not None


def record(generation: Generation) -> None:
    """Hand ``generation`` to the innermost active collector, if any."""
    collector = _ACTIVE.get()
    if collector is not None:
        collector.add(generation)
