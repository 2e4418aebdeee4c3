"""The worker-side store of captured step values: one device ring, bounded, keyed by request.

Every captured decoding step writes its rows (one per captured request) into consecutive
slots of a ring tensor that stays on the model's device, so no step waits for a host copy.
The host keeps only integers: for each request key, ``step -> absolute slot``. A step is
numbered by how many output tokens the request had when its logits were computed, so a
chunked prefill's partial chunks and a preempted request's recomputation write the same
step again and the last write wins (the final chunk's logits, or an identical recompute).

Bounds: the ring has a fixed number of slots; a slot read after it was reused is reported,
never returned. Requests that left the batch without being fetched (finished and not yet
fetched, aborted, cancelled) are kept in insertion order and the oldest are dropped beyond
``max_detached``; :meth:`CaptureStore.discard` drops them at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class _Entry:
    steps: dict[int, int] = field(default_factory=dict)  # step -> absolute ring slot
    attached: bool = True  # in the running batch now
    closed: bool = False  # fetched or discarded while still in the batch: later steps are ignored
    previous: dict[int, Any] = field(default_factory=dict)  # step -> distribution, stats="full" only


class CaptureStore:
    """Ring of ``[capacity, columns]`` float32 values on ``device`` plus per-request slot maps."""

    def __init__(self, columns: int, capacity: int, device: torch.device | str, max_detached: int = 4096):
        if capacity < 1 or columns < 1 or max_detached < 0:
            raise ValueError(f"capacity={capacity}, columns={columns}, max_detached={max_detached} must be positive")
        self.capacity = int(capacity)
        self.columns = int(columns)
        self.max_detached = int(max_detached)
        self.ring = torch.zeros(self.capacity, self.columns, dtype=torch.float32, device=device)
        self.written = 0  # absolute index of the next free slot
        self._entries: dict[str, _Entry] = {}
        self._detached: OrderedDict[str, None] = OrderedDict()
        # collective_rpc may run on another thread than the sampler (engine-core busy loop vs RPC);
        # every mutation of the host maps is short and taken under this lock.
        self._lock = threading.Lock()

    # -- sampler side ----------------------------------------------------------------------
    def attach(self, key: str) -> None:
        """A captured request entered the batch (new, or back after preemption)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._entries[key] = _Entry()
            else:
                entry.attached = True
            self._detached.pop(key, None)

    def detach(self, key: str) -> None:
        """A captured request left the batch: finished, aborted, or preempted (it may come back)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.attached = False
            if entry.closed:
                del self._entries[key]
                return
            self._detached[key] = None
            while len(self._detached) > self.max_detached:
                oldest, _ = self._detached.popitem(last=False)
                self._entries.pop(oldest, None)

    def write(self, values: torch.Tensor, keys_and_steps: list[tuple[str, int]]) -> None:
        """Store one step: ``values`` is ``[R, columns]``, row ``r`` belongs to ``keys_and_steps[r]``."""
        rows = int(values.shape[0])
        if rows > self.capacity:
            raise ValueError(f"{rows} rows do not fit a capture ring of {self.capacity} slots")
        with self._lock:
            start = self.written
            if start % self.capacity + rows > self.capacity:  # keep a step contiguous: skip the tail
                start = (start // self.capacity + 1) * self.capacity
            self.written = start + rows
            offset = start % self.capacity
            self.ring[offset : offset + rows].copy_(values, non_blocking=True)
            for r, (key, step) in enumerate(keys_and_steps):
                entry = self._entries.get(key)
                if entry is not None and not entry.closed:
                    entry.steps[step] = start + r

    def previous(self, key: str, step: int) -> Any:
        """The distribution kept for ``key`` at ``step - 1`` (for the JSD), or None."""
        entry = self._entries.get(key)
        return entry.previous.get(step - 1) if entry is not None else None

    def keep_previous(self, key: str, step: int, distribution: Any) -> None:
        """Keep ``key``'s distribution at ``step``; only the two latest steps stay (a recompute of
        step ``s`` still needs ``s - 1``)."""
        entry = self._entries.get(key)
        if entry is None or entry.closed:
            return
        entry.previous[step] = distribution
        for old in [s for s in entry.previous if s < step - 1]:
            del entry.previous[old]

    def link(self, key: str, continues: str) -> None:
        """``key`` continues ``continues`` (the z_(T+1) follow-up): its step 0 pairs with the
        other request's last kept distribution."""
        with self._lock:
            entry, source = self._entries.get(key), self._entries.get(continues)
            if entry is not None and source is not None and source.previous and not entry.steps:
                entry.previous[-1] = source.previous[max(source.previous)]

    # -- RPC side --------------------------------------------------------------------------
    def fetch(self, keys: list[str]) -> dict[str, dict]:
        """Pop the values of ``keys``: ``{key: {"values": [[...], ...]} | {"error": str}}``.

        ``values[s]`` is step ``s``; steps must be ``0..n-1`` without gaps. One gather and one
        device-to-host copy for all keys together.
        """
        out: dict[str, dict] = {}
        slots: list[int] = []
        spans: list[tuple[str, int, int]] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None:
                    out[key] = {
                        "error": f"no captured steps for request key {key!r} (never captured, "
                        "already fetched, or dropped from the bounded store)"
                    }
                    continue
                steps = sorted(entry.steps)
                absolute = [entry.steps[s] for s in steps]
                self._close(key, entry)
                if steps != list(range(len(steps))):
                    out[key] = {"error": f"captured steps {steps[:8]}... are not contiguous from 0"}
                    continue
                if absolute and self.written - min(absolute) > self.capacity:
                    out[key] = {
                        "error": f"captured values were overwritten: the ring of {self.capacity} slots "
                        "is too small for the tokens in flight; raise spill_guard capacity"
                    }
                    continue
                spans.append((key, len(slots), len(absolute)))
                slots += [a % self.capacity for a in absolute]
            gathered = self.ring[torch.tensor(slots, dtype=torch.long, device=self.ring.device)] if slots else None
        rows = gathered.cpu().tolist() if gathered is not None else []
        for key, begin, n in spans:
            out[key] = {"values": rows[begin : begin + n]}
        return out

    def discard(self, keys: list[str]) -> int:
        """Drop ``keys`` (aborted or cancelled requests); returns how many held values."""
        dropped = 0
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None:
                    dropped += 1
                    self._close(key, entry)
        return dropped

    def _close(self, key: str, entry: _Entry) -> None:
        self._detached.pop(key, None)
        if entry.attached:  # still in the batch: keep a value-less marker until it leaves
            entry.closed = True
            entry.steps, entry.previous = {}, {}
        else:
            del self._entries[key]

    def stats(self) -> dict[str, int]:
        """Counts for tests and monitoring: entries holding values, markers, detached entries."""
        with self._lock:
            holding = sum(1 for e in self._entries.values() if not e.closed)
            return {
                "holding": holding,
                "closed_markers": len(self._entries) - holding,
                "detached": len(self._detached),
                "slots_written": self.written,
                "capacity": self.capacity,
            }
