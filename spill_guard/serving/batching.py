"""Dynamic batching: concurrent requests with compatible settings share one ``generate`` call.

Requests (``Job`` s) wait in an asyncio queue. The batcher takes the oldest, then gathers
more jobs with the same key for at most ``max_wait_ms`` or until ``max_batch`` rows, and runs
the batch in a single worker thread, so the event loop keeps accepting requests (and
streaming tokens) while the model works. Jobs with another key wait for the next round, in
arrival order. While one batch runs, the next one fills up.

The key is chosen by the caller: all greedy requests share one; sampled ones share one per
(temperature, top_p); a seeded request gets a key of its own, because the random numbers a
row draws depend on the batch it is in, and a seed must give the same answer every time.

After the generate, each job's finish runs in its request's context. A :class:`StagedFinish`
runs in two steps around one shared write: every job's ``decide`` (the guard's decisions,
returning the review-log entries), then one ``write`` of all the batch's entries (one fsync
or transaction for the batch), then every job's ``complete`` with its entries' outcomes. A
job's future is resolved only after that write returned: a response never leaves before its
record is in the log.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextvars
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("spill_guard.serving")


class StagedFinish(abc.ABC):
    """A job's finish in two steps around the batch's one review-log write (see the module docstring).

    Called as a plain function (``finish(outcomes)``, as runners without a shared write do,
    e.g. the vLLM runner), it runs both steps around its own :meth:`write`. The finishes
    submitted to one :class:`Batcher` write to the same log (one server's engine): the
    batch's write goes through the first staged job's :meth:`write`.
    """

    @abc.abstractmethod
    def decide(self, outcomes: list[Any]) -> list[Any]:
        """Worker thread, the request's context: decide; return the entries to write."""

    @abc.abstractmethod
    def write(self, entries: list[Any]) -> list[Any]:
        """Write entries (of one job or of a whole batch) at once; one outcome per entry."""

    @abc.abstractmethod
    def complete(self, written: list[Any]) -> Any:
        """Worker thread, the request's context, after the write: the job's result (or raise)."""

    def __call__(self, outcomes: list[Any]) -> Any:
        return self.complete(self.write(self.decide(outcomes)))


@dataclass
class Job:
    """One request's rows. ``finish(outcomes)`` runs in the worker thread after the batch."""

    key: Hashable
    rows: Sequence[Any]
    finish: Callable[[list[Any]], Any]
    future: asyncio.Future[Any] = field(repr=False)
    # The submitting request's context: its policy, log write and OpenTelemetry event run in it, so
    # an evaluation event is parented to that request's span although the batch is shared.
    context: contextvars.Context = field(repr=False, default_factory=contextvars.copy_context)


class Batcher:
    """Groups :class:`Job` s and runs ``run_batch(key, rows) -> outcomes`` in one worker thread."""

    def __init__(
        self,
        run_batch: Callable[[Hashable, list[Any]], list[Any]],
        *,
        max_batch: int,
        max_wait_ms: float,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[Job] | None = None
        self._deferred: list[Job] = []
        self._task: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spill-guard-model")

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The model's one worker thread (also used to load the model)."""
        return self._executor

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="spill-guard-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, key: Hashable, rows: Sequence[Any], finish: Callable[[list[Any]], Any]) -> Any:
        """Queue a job and wait for ``finish``'s result (or its exception)."""
        if self._queue is None:  # a host that skips the app's lifespan (the lifespan normally starts it)
            self.start()
        assert self._queue is not None  # start() creates the queue
        job = Job(key, rows, finish, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def _next_job(self, timeout: float | None) -> Job | None:
        assert self._queue is not None
        try:
            if timeout is None:
                return await self._queue.get()
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _collect(self) -> list[Job]:
        """The next batch: the oldest job, then same-key jobs within the wait and size bounds."""
        first = self._deferred.pop(0) if self._deferred else await self._next_job(None)
        assert first is not None
        batch, size = [first], len(first.rows)
        for waiting in list(self._deferred):  # waiting jobs of the same key join first, in order
            if waiting.key == first.key and size + len(waiting.rows) <= self.max_batch:
                self._deferred.remove(waiting)
                batch.append(waiting)
                size += len(waiting.rows)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            job = await self._next_job(remaining)
            if job is None:
                break
            if job.key == first.key and size + len(job.rows) <= self.max_batch:
                batch.append(job)
                size += len(job.rows)
            else:
                self._deferred.append(job)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            batch = [job for job in batch if not job.future.done()]  # e.g. a client that went away
            if not batch:
                continue
            try:
                await loop.run_in_executor(self._executor, self._run, batch)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # never let one bad batch stop the loop
                log.exception("batch failed")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _run(self, batch: list[Job]) -> None:
        """Worker thread: one generate for every row, then each job's ``finish``."""
        rows = [row for job in batch for row in job.rows]
        if self.on_batch is not None:
            self.on_batch(len(rows))
        try:
            outcomes = self.run_batch(batch[0].key, rows)
        except BaseException as exc:
            for job in batch:
                self._resolve(job, error=exc)
            return
        start = 0
        staged: list[tuple[Job, StagedFinish, list[Any]]] = []
        for job in batch:
            mine = outcomes[start : start + len(job.rows)]
            start += len(job.rows)
            try:
                if isinstance(job.finish, StagedFinish):
                    staged.append((job, job.finish, job.context.run(job.finish.decide, mine)))
                else:
                    self._resolve(job, result=job.context.run(job.finish, mine))
            except BaseException as exc:  # one job's policy or log failure fails that job only
                self._resolve(job, error=exc)
        if staged:
            self._write_and_complete(staged)

    def _write_and_complete(self, staged: list[tuple[Job, StagedFinish, list[Any]]]) -> None:
        """One write for every staged job's entries, then each job's ``complete`` with its outcomes."""
        entries = [entry for _, _, mine in staged for entry in mine]
        try:
            written = staged[0][1].write(entries)  # every finish shares the writer
        except BaseException as exc:
            for job, _, _ in staged:
                self._resolve(job, error=exc)
            return
        start = 0
        for job, finish, mine in staged:
            outcomes = written[start : start + len(mine)]
            start += len(mine)
            try:
                self._resolve(job, result=job.context.run(finish.complete, outcomes))
            except BaseException as exc:
                self._resolve(job, error=exc)

    @staticmethod
    def _resolve(job: Job, result: Any = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if job.future.done():
                return
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

        job.future.get_loop().call_soon_threadsafe(settle)
