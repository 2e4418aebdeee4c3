"""A stable dev/test split of task items, so defaults are chosen on one half and reported on the other.

The split depends only on the item id (a hash), not on order or on ``--n``, so an item
never changes side between runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from spill_guard.errors import InvalidParameterError

SPLITS = ("all", "dev", "test")
T = TypeVar("T")


def split_of(item_id: str) -> str:
    """``"dev"`` or ``"test"``, about half each, fixed per id."""
    digest = hashlib.sha256(f"spill_guard-split:{item_id}".encode()).digest()
    return "dev" if digest[0] % 2 == 0 else "test"


def select(items: Sequence[T], split: str, n: int | None) -> list[T]:
    """Items of ``split`` in a stable pseudo-random order (by hashed id), at most ``n`` of them.

    The order is shuffled so that ``--n 200`` of a task sorted by difficulty still samples
    every difficulty.
    """
    if split not in SPLITS:
        raise InvalidParameterError(f"split must be one of {SPLITS}, got {split!r}.")
    if n is not None and n < 1:
        raise InvalidParameterError(f"--n must be >= 1, got {n!r}.")
    chosen = [it for it in items if split == "all" or split_of(it.id) == split]  # type: ignore[attr-defined]
    chosen.sort(key=lambda it: hashlib.sha256(f"order:{it.id}".encode()).hexdigest())  # type: ignore[attr-defined]
    return chosen[:n] if n is not None else chosen
