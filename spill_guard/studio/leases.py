"""Leases: an item handed to one reviewer is not handed to another until it is labelled, released or expired.

One :class:`LeaseBook` per studio process, in memory (a restart frees every lease; two studios over
one log do not see each other's leases: run one studio per log). Picking the next item and leasing
it happen under one lock, so two reviewers asking at the same moment get different items.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Lease:
    record_id: str
    reviewer: str
    expires: float  # time.monotonic() deadline


class LeaseBook:
    """Who holds which record, until when. ``seconds``: how long a lease lasts without a label."""

    def __init__(self, seconds: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not seconds > 0:
            raise ValueError(f"a lease must last a positive number of seconds, got {seconds!r}")
        self.seconds = float(seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._by_record: dict[str, Lease] = {}

    def _live(self, record_id: str, now: float) -> Lease | None:
        lease = self._by_record.get(record_id)
        if lease is not None and lease.expires <= now:
            del self._by_record[record_id]
            return None
        return lease

    def holder(self, record_id: str) -> str | None:
        with self._lock:
            lease = self._live(record_id, self._clock())
            return None if lease is None else lease.reviewer

    def take_first(self, reviewer: str, candidates: Iterable[str]) -> str | None:
        """Lease to ``reviewer`` the first candidate nobody else holds (theirs already counts); its id, or None.

        A reviewer holds one item at a time: taking a new one releases the previous one.
        """
        with self._lock:
            now = self._clock()
            for record_id in candidates:
                lease = self._live(record_id, now)
                if lease is None or lease.reviewer == reviewer:
                    self._release_all(reviewer, keep=record_id)
                    self._by_record[record_id] = Lease(record_id, reviewer, now + self.seconds)
                    return record_id
        return None

    def take(self, reviewer: str, record_id: str) -> str | None:
        """Lease ``record_id`` to ``reviewer`` if nobody else holds it; else the other holder's name."""
        with self._lock:
            lease = self._live(record_id, self._clock())
            if lease is not None and lease.reviewer != reviewer:
                return lease.reviewer
            self._release_all(reviewer, keep=record_id)
            self._by_record[record_id] = Lease(record_id, reviewer, self._clock() + self.seconds)
            return None

    def release(self, reviewer: str, record_id: str) -> None:
        with self._lock:
            lease = self._by_record.get(record_id)
            if lease is not None and lease.reviewer == reviewer:
                del self._by_record[record_id]

    def _release_all(self, reviewer: str, keep: str) -> None:
        for record_id, lease in list(self._by_record.items()):
            if lease.reviewer == reviewer and record_id != keep:
                del self._by_record[record_id]

    def held(self) -> dict[str, str]:
        """record id -> reviewer, for live leases."""
        with self._lock:
            now = self._clock()
            return {rid: lease.reviewer for rid in list(self._by_record) if (lease := self._live(rid, now))}
