"""The transformers backend: the streaming capture and teacher forcing behind the backend contract.

:class:`~spill_guard.backends.transformers.backend.TransformersBackend` generates with
``model.generate`` and a forward hook reducing each step's raw logits
(:func:`spill_guard.capture.generate_with_capture`), ends rows with one stopping criterion
(:mod:`~spill_guard.backends.transformers.stopping`), and scores answers made elsewhere in one
teacher-forced pass (:func:`spill_guard.capture.teacher_forced_traces`).
"""

from __future__ import annotations

from spill_guard.backends.transformers.backend import TransformersBackend

__all__ = ["TransformersBackend"]
