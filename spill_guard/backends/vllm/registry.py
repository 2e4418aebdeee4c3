"""Where a worker process finds its capture store: the processor registers it, the worker
extension (reached through ``collective_rpc``) reads it. One store per worker process."""

from __future__ import annotations

from typing import Any

_STORES: list[Any] = []


def register_store(store: Any) -> None:
    _STORES.clear()  # a new engine in this process replaces the old one's store
    _STORES.append(store)


def current_store() -> Any:
    if not _STORES:
        from spill_guard.errors import CaptureError

        raise CaptureError(
            "no spill_guard capture store in this vLLM worker: the engine was not created with "
            "logits_processors=[SpillGuardLogitsProcessor]; build it with spill_guard.backends.vllm.engine_kwargs()."
        )
    return _STORES[0]
