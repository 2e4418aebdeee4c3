"""Capture: raw-logit statistics per generated token, streamed or teacher-forced."""

from spill_guard.capture.streaming import CapturedGeneration, StreamingCapture, TokenStep, generate_with_capture
from spill_guard.capture.teacher_forced import teacher_forced_traces
from spill_guard.capture.token_offsets import token_char_spans
from spill_guard.capture.trace import TokenTrace

__all__ = [
    "CapturedGeneration",
    "StreamingCapture",
    "TokenStep",
    "TokenTrace",
    "generate_with_capture",
    "teacher_forced_traces",
    "token_char_spans",
]
