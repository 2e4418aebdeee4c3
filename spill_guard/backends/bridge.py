"""A backend of one kind seen as the other: sync engines awaited, async engines called from threads.

* :class:`ThreadedBackend` is the :class:`~spill_guard.backends.base.AsyncBackend` view of a
  synchronous backend (in-process transformers weights): every call runs in the view's one
  worker thread, in the order the calls were made, so an event loop keeps serving while the
  model works and two generations never share the weights at once.
* :class:`LoopBackend` is the :class:`~spill_guard.backends.base.Backend` view of an async
  backend (vLLM's ``AsyncLLM``): a call from a thread is scheduled on the event loop the view
  was bound to (:meth:`LoopBackend.bind`) and waited for. An async engine binds its output
  handler to the first loop it runs on, so the view never starts a loop of its own.

:func:`async_view` and :func:`sync_view` build them and undo each other (the view of a view is
the original), so the facades convert freely: :meth:`~spill_guard.SpillModel.asynchronous` and
:meth:`~spill_guard.AsyncSpillModel.synchronous`. Both views declare the capabilities of what
they wrap, and closing a view closes it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from typing import Any

from spill_guard.backends.base import Capabilities, Listener, StopHook
from spill_guard.errors import InvalidParameterError
from spill_guard.models.params import GenerationParams
from spill_guard.report import ScoredAnswer


class _View:
    """What both views share: the wrapped backend's facts (its name and capabilities are the view's)."""

    inner: Any

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    @property
    def loaded(self) -> Any:
        return self.inner.loaded

    @property
    def betas(self) -> tuple[float, ...]:
        return tuple(self.inner.betas)

    @property
    def beta(self) -> float:
        return float(self.inner.beta)

    def close(self) -> None:
        """Close the wrapped backend (the engine it holds, where it holds one)."""
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class ThreadedBackend(_View):
    """An async view of the synchronous ``backend``: its calls run in one worker thread, in order."""

    def __init__(self, backend: Any):
        self.inner = backend
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spill-guard-model")

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The model's one worker thread (a server also loads its model there)."""
        return self._executor

    async def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: GenerationParams | Sequence[GenerationParams],
        *,
        listeners: Sequence[Listener] = (),
        stop_hooks: Sequence[StopHook] = (),
        stats: str | None = "full",
        final_step: str = "always",
    ) -> list[Any]:
        """The wrapped backend's ``generate`` in the worker thread (listeners and hooks are called there)."""

        def run() -> list[Any]:
            return self.inner.generate(
                prompts, params, listeners=listeners, stop_hooks=stop_hooks, stats=stats, final_step=final_step
            )

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def score(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[ScoredAnswer]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.inner.score, prompts, answers)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        super().close()


class LoopBackend(_View):
    """A synchronous view of the async ``backend``: calls from threads run on the loop it is bound to."""

    def __init__(self, backend: Any):
        self.inner = backend
        self.loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run every later call on ``loop`` (the loop the async engine runs on, e.g. a server's)."""
        self.loop = loop

    def _wait(self, coroutine: Any) -> Any:
        loop = self.loop
        if loop is None or not loop.is_running():
            coroutine.close()
            raise InvalidParameterError(
                f"{self.inner!r} is an async engine: a synchronous call needs the running event loop it "
                "serves on (LoopBackend.bind(loop)); await AsyncSpillModel.generate_params instead, or "
                "load the model with SpillModel.load(..., backend=...) for synchronous generation."
            )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coroutine.close()
            raise InvalidParameterError(
                "a synchronous call on the event loop's own thread would wait for itself; "
                "await the async facade's generate_params there instead."
            )
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: GenerationParams | Sequence[GenerationParams],
        *,
        listeners: Sequence[Listener] = (),
        stop_hooks: Sequence[StopHook] = (),
        stats: str | None = "full",
        final_step: str = "always",
    ) -> list[Any]:
        return self._wait(
            self.inner.generate(
                prompts, params, listeners=listeners, stop_hooks=stop_hooks, stats=stats, final_step=final_step
            )
        )

    def score(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[ScoredAnswer]:
        return self._wait(self.inner.score(prompts, answers))


def async_view(backend: Any) -> Any:
    """The async view of a synchronous backend (a :class:`LoopBackend`'s own async backend back)."""
    return backend.inner if isinstance(backend, LoopBackend) else ThreadedBackend(backend)


def sync_view(backend: Any) -> Any:
    """The synchronous view of an async backend (a :class:`ThreadedBackend`'s own backend back)."""
    return backend.inner if isinstance(backend, ThreadedBackend) else LoopBackend(backend)


def bind_loop(backend: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Bind ``backend`` to ``loop`` where it is a :class:`LoopBackend` (anything else runs anywhere)."""
    if isinstance(backend, LoopBackend):
        backend.bind(loop)
