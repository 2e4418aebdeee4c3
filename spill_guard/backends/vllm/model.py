"""Old import path of :func:`~spill_guard.backends.vllm.replay.replay_steps` (kept until the server imports
it from :mod:`spill_guard.backends.vllm.replay`; the models are ``SpillModel`` s over
:class:`~spill_guard.backends.vllm.backend.VllmBackend` now)."""

from spill_guard.backends.vllm.replay import replay_steps

__all__ = ["replay_steps"]
