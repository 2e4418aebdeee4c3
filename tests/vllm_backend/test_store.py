"""The capture store on its own: last write wins, bounded, no leaks, overwrites reported.

Needs no vllm (the store is plain torch), so these run in every environment.
"""

from __future__ import annotations

import torch

from spill_guard.backends.vllm.store import CaptureStore


def row(value: float, width: int = 2) -> torch.Tensor:
    return torch.full((1, width), value)


def test_a_rewritten_step_keeps_the_last_write_as_chunked_prefill_needs():
    store = CaptureStore(columns=2, capacity=16, device="cpu")
    store.attach("a")
    store.write(row(1.0), [("a", 0)])  # a partial prefill chunk
    store.write(row(2.0), [("a", 0)])  # the final chunk: the real step 0
    store.write(row(3.0), [("a", 1)])
    assert store.fetch(["a"])["a"]["values"] == [[2.0, 2.0], [3.0, 3.0]]


def test_fetch_pops_and_a_detached_request_leaves_nothing():
    store = CaptureStore(columns=2, capacity=16, device="cpu")
    store.attach("a")
    store.write(row(1.0), [("a", 0)])
    store.detach("a")
    store.fetch(["a"])
    assert store.stats()["holding"] == 0 and store.stats()["closed_markers"] == 0
    assert "error" in store.fetch(["a"])["a"]


def test_fetched_while_in_batch_ignores_later_steps_until_it_leaves():
    store = CaptureStore(columns=2, capacity=16, device="cpu")
    store.attach("a")
    store.write(row(1.0), [("a", 0)])
    store.fetch(["a"])
    store.write(row(9.0), [("a", 1)])  # async scheduling ran one more step
    assert store.stats() == {**store.stats(), "holding": 0, "closed_markers": 1}
    store.detach("a")
    assert store.stats()["closed_markers"] == 0


def test_detached_requests_are_bounded_oldest_dropped_first():
    store = CaptureStore(columns=2, capacity=64, device="cpu", max_detached=3)
    for i in range(10):  # e.g. aborted requests nobody fetches
        store.attach(f"r{i}")
        store.write(row(float(i)), [(f"r{i}", 0)])
        store.detach(f"r{i}")
    assert store.stats()["holding"] == 3
    assert "error" in store.fetch(["r0"])["r0"] and store.fetch(["r9"])["r9"]["values"] == [[9.0, 9.0]]


def test_discard_drops_aborted_requests():
    store = CaptureStore(columns=2, capacity=16, device="cpu")
    store.attach("a")
    store.write(row(1.0), [("a", 0)])
    assert store.discard(["a", "unknown"]) == 1
    store.detach("a")
    assert store.stats()["holding"] == 0 and store.stats()["closed_markers"] == 0


def test_overwritten_values_are_reported_never_returned():
    store = CaptureStore(columns=2, capacity=4, device="cpu")
    store.attach("old")
    store.attach("new")
    store.write(row(1.0), [("old", 0)])
    for step in range(5):  # wraps the 4-slot ring over "old"
        store.write(row(2.0), [("new", step)])
    assert "overwritten" in store.fetch(["old"])["old"]["error"]


def test_a_step_never_straddles_the_ring_end():
    store = CaptureStore(columns=1, capacity=8, device="cpu")
    store.attach("a")
    store.attach("b")
    for step in range(3):  # 3 rows a step: the third step skips slots 6-7 and starts again at 0
        values = torch.tensor([[10.0 * step + 1], [10.0 * step + 2], [10.0 * step + 3]])
        store.write(values, [("a", 2 * step), ("b", step), ("a", 2 * step + 1)])
    assert store.written == 11
    assert "overwritten" in store.fetch(["a"])["a"]["error"]  # its step 0 sat in a reused slot
    store.attach("c")
    store.write(torch.tensor([[7.0]]), [("c", 0)])
    assert store.fetch(["c"])["c"]["values"] == [[7.0]]
