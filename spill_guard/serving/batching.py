"""Dynamic batching: concurrent requests with compatible settings share one ``generate`` call.

Requests (``Job`` s) wait in an asyncio queue. On an engine whose calls run one after
another (in-process weights: the async facade runs them in the model's one worker thread),
the batcher takes the oldest job, then gathers more jobs with the same key for at most
``max_wait_ms`` or until ``max_batch`` rows (or jobs: ``per="jobs"``, for jobs of several rows such as a
second opinion's samples), and awaits one generate for the batch, so the
event loop keeps accepting requests (and streaming tokens) while the model works. Jobs with
another key wait for the next round, in arrival order. While one batch runs, the next one
fills up. On an engine that batches concurrent calls itself (vLLM's continuous batching),
every job is handed over as soon as it arrives. Both go through the same generate call.

The key is chosen by the caller: all greedy requests share one; sampled ones share one per
(temperature, top_p); a seeded request gets a key of its own, because the random numbers a
row draws depend on the batch it is in, and a seed must give the same answer every time.

After the generate, each job's finish runs in a finish thread, in its request's context. A
:class:`StagedFinish` runs in two steps around one shared write: every job's ``decide`` (the guard's decisions,
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
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from spill_guard.errors import InvalidParameterError
from spill_guard.serving.errors import OpenAIError

log = logging.getLogger("spill_guard.serving")


class StagedFinish(abc.ABC):
    """A job's finish in two steps around the batch's one review-log write (see the module docstring).

    Called as a plain function (``finish(outcomes)``), it runs both steps around its own
    :meth:`write`. The finishes submitted to one :class:`Batcher` write to the same log (one
    server's engine): the batch's write goes through the first staged job's :meth:`write`.
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
    """Hands :class:`Job` s to ``generate(key, rows) -> outcomes`` (a coroutine), then runs their finishes.

    ``groups()`` true (an engine whose calls run one after another, e.g. in-process weights):
    jobs with the same key are grouped into one call (see the module docstring), one call at a
    time. False (an engine with continuous batching of its own, e.g. vLLM's async engine): each
    job is handed over as soon as it arrives, any number in flight. It is asked per job (a
    server's model may still be loading when the batcher starts). Either way the
    finishes run in ``finish_threads`` worker threads (they block on the review log's I/O, and a
    retry there waits for its own generation).
    """

    def __init__(
        self,
        generate: Callable[[Hashable, list[Any]], Awaitable[list[Any]]],
        *,
        groups: Callable[[], bool],
        max_batch: int,
        max_wait_ms: float,
        on_batch: Callable[[int], None] | None = None,
        finish_threads: int = 4,
        per: Literal["rows", "jobs"] = "rows",
    ):
        if per not in ("rows", "jobs"):
            raise InvalidParameterError(f"Batcher per must be 'rows' or 'jobs', got {per!r}.")
        self.generate = generate
        self.groups = groups
        self.max_batch = max_batch
        self.per = per
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[Job] | None = None
        self._deferred: list[Job] = []
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._finishers = concurrent.futures.ThreadPoolExecutor(
            max_workers=finish_threads, thread_name_prefix="spill-guard-finish"
        )

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="spill-guard-batcher")

    async def stop(self) -> None:
        for task in [self._task, *self._running]:
            if task is not None:
                task.cancel()
        for task in [self._task, *self._running]:
            if task is not None:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._finishers.shutdown(wait=False, cancel_futures=True)

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

    def _size(self, job: Job) -> int:
        """What ``job`` counts against ``max_batch``: its rows, or 1 (``per="jobs"``)."""
        return 1 if self.per == "jobs" else len(job.rows)

    async def _collect(self, first: Job) -> list[Job]:
        """The batch of ``first`` (the oldest job): same-key jobs within the wait and size bounds."""
        batch, size = [first], self._size(first)
        for waiting in list(self._deferred):  # waiting jobs of the same key join first, in order
            if waiting.key == first.key and size + self._size(waiting) <= self.max_batch:
                self._deferred.remove(waiting)
                batch.append(waiting)
                size += self._size(waiting)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            job = await self._next_job(remaining)
            if job is None:
                break
            if job.key == first.key and size + self._size(job) <= self.max_batch:
                batch.append(job)
                size += self._size(job)
            else:
                self._deferred.append(job)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._deferred.pop(0) if self._deferred else await self._next_job(None)
            assert first is not None
            if self.groups():
                batch = [job for job in await self._collect(first) if not job.future.done()]  # e.g. a client gone
                if batch:
                    await self._run(batch)  # one call at a time; the next batch fills up meanwhile
            elif not first.future.done():
                task = loop.create_task(self._run([first]), context=first.context.copy())  # the request's context
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[Job]) -> None:
        """One generate for every row of the batch, then the finishes in a worker thread."""
        rows = [row for job in batch for row in job.rows]
        if self.on_batch is not None:
            self.on_batch(len(rows))
        try:
            outcomes = await self.generate(batch[0].key, rows)
            await asyncio.get_running_loop().run_in_executor(self._finishers, self._finish, batch, outcomes)
        except asyncio.CancelledError:
            for job in batch:
                job.future.cancel()
            raise
        except Exception as exc:  # never let one bad batch stop the loop
            if not isinstance(exc, OpenAIError):  # a request the backend refuses is the client's to fix
                log.exception("batch failed")
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)

    def _finish(self, batch: list[Job], outcomes: list[Any]) -> None:
        """Worker thread: each job's ``finish`` with its outcomes (staged ones around one shared write).

        The jobs of a batch are decided at the same time, one thread each: a decision that generates
        again (a retry, a second opinion's samples) waits for its generation, and those of the batch's
        jobs can then share calls (the engine's sample batcher) instead of queueing one after another.
        """
        parts, start = [], 0
        for job in batch:
            parts.append(outcomes[start : start + len(job.rows)])
            start += len(job.rows)
        if len(batch) == 1:
            firsts = [self._first_step(batch[0], parts[0])]
        else:
            with concurrent.futures.ThreadPoolExecutor(len(batch), thread_name_prefix="spill-guard-decide") as pool:
                firsts = list(pool.map(self._first_step, batch, parts))
        staged = [
            (job, job.finish, entries)
            for job, entries in zip(batch, firsts)
            if entries is not None and isinstance(job.finish, StagedFinish)
        ]
        if staged:
            self._write_and_complete(staged)

    def _first_step(self, job: Job, mine: list[Any]) -> list[Any] | None:
        """A staged job's decision (its entries to write), or a plain job's result (resolved here: None)."""
        try:
            if isinstance(job.finish, StagedFinish):
                return job.context.run(job.finish.decide, mine)
            self._resolve(job, result=job.context.run(job.finish, mine))
        except BaseException as exc:  # one job's policy or log failure fails that job only
            self._resolve(job, error=exc)
        return None

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
