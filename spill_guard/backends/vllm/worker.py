"""The worker extension that lets the client read the capture store via ``collective_rpc``.

Passed to vLLM as ``worker_extension_cls``; vLLM mixes it into its worker class, so the
methods run inside the worker process, between model steps.
"""

from __future__ import annotations

from typing import Any

from spill_guard.backends.vllm.registry import current_store


class SpillGuardWorkerExtension:
    """``collective_rpc("spill_guard_fetch", args=(keys,))`` and friends."""

    def _spill_guard_store(self) -> Any:
        # This worker's own processor first: two in-process engines (tests) each have one.
        runner = getattr(self, "model_runner", None)
        procs = getattr(getattr(runner, "input_batch", None), "logitsprocs", None)
        for proc in procs.all if procs is not None else ():
            store = getattr(proc, "store", None)
            if store is not None and type(proc).__name__ == "SpillGuardLogitsProcessor":
                return store
        return current_store()

    def spill_guard_fetch(self, keys: list[str]) -> dict[str, dict]:
        return self._spill_guard_store().fetch(list(keys))

    def spill_guard_discard(self, keys: list[str]) -> int:
        return self._spill_guard_store().discard(list(keys))

    def spill_guard_store_stats(self) -> dict[str, int]:
        return self._spill_guard_store().stats()
