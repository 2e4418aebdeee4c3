"""The server's batcher bounds a batch by rows (requests' rows) or by jobs (a second opinion's K-row sample
jobs: up to --max-batch requests' samples per call, whatever K is), on a real event loop."""

from __future__ import annotations

import asyncio

import pytest

from spill_guard.errors import InvalidParameterError
from spill_guard.serving.batching import Batcher


def batches(per: str, max_batch: int, jobs: list[int]) -> tuple[list[int], list[list[str]]]:
    """Submit jobs of the given row counts at once; the row count of each generate call, and each job's rows."""
    calls: list[int] = []

    async def generate(key, rows):
        calls.append(len(rows))
        return [f"out:{r}" for r in rows]

    async def main():
        batcher = Batcher(generate, groups=lambda: True, max_batch=max_batch, max_wait_ms=200, per=per)
        batcher.start()
        try:
            return await asyncio.gather(*(
                batcher.submit("k", [f"{j}.{i}" for i in range(n)], list) for j, n in enumerate(jobs)))
        finally:
            await batcher.stop()

    return calls, asyncio.run(main())


def test_per_jobs_counts_requests_not_rows():
    calls, results = batches("jobs", 2, [3, 3, 3, 3])
    assert calls == [6, 6]  # two 3-row jobs per call
    assert results == [[f"out:{j}.{i}" for i in range(3)] for j in range(4)]  # each job gets its own rows back


def test_per_rows_counts_rows():
    assert batches("rows", 4, [3, 3, 3])[0] == [3, 3, 3]  # 3 + 3 > 4: each job alone
    assert batches("rows", 6, [3, 3, 3])[0] == [6, 3]
    assert batches("rows", 2, [5])[0] == [5]  # a job larger than the bound still runs, alone


def test_a_bad_bound_kind_is_refused():
    with pytest.raises(InvalidParameterError, match="'rows' or 'jobs', got 'calls'"):
        Batcher(lambda key, rows: None, groups=lambda: True, max_batch=2, max_wait_ms=1, per="calls")
