"""The transformers backend: today's capture, behind the backend seam.

Generation is ``model.generate`` with a forward hook reducing each step's raw logits
(:func:`spill_guard.capture.generate_with_capture`); answers made elsewhere get one
teacher-forced pass (:func:`spill_guard.capture.teacher_forced_traces`). This module only
names those entry points; the code stays in :mod:`spill_guard.capture`.
"""

from __future__ import annotations

from typing import Any

from spill_guard.capture.streaming import generate_with_capture
from spill_guard.capture.teacher_forced import teacher_forced_traces

__all__ = ["generate_traces", "load", "teacher_forced_traces"]

#: Streaming capture during ``generate`` (the transformers backend's generation path).
generate_traces = generate_with_capture


def load(name_or_path: str | None = None, **kwargs: Any) -> Any:
    """A :class:`~spill_guard.SpillModel` on transformers (``SpillModel.load`` without a backend)."""
    from spill_guard.spill_model import SpillModel

    return SpillModel.load(name_or_path, **kwargs)
