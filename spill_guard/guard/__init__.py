"""The guard: generate → locate span → score → decide (calibrated rule) → act (policy) → log."""

from spill_guard.calibration.consistency import Consistency
from spill_guard.guard.early_stop import EarlyStop
from spill_guard.guard.guard import SpillGuard
from spill_guard.guard.risk_rule import RiskRule
from spill_guard.guard.stream import stream_generation
from spill_guard.guard.verdict import (
    AnswerSpan,
    Attempt,
    HallucinationDetected,
    TokenEvent,
    Verdict,
    VerdictNotLoggedError,
    VerdictNotLoggedWarning,
    attach_scored,
)

# stream_generation and attach_scored are public for integrations that run their own
# generation (e.g. a framework's chat model) but want the guard's streaming and verdicts.
__all__ = [
    "Consistency",
    "AnswerSpan",
    "Attempt",
    "EarlyStop",
    "HallucinationDetected",
    "RiskRule",
    "SpillGuard",
    "TokenEvent",
    "Verdict",
    "VerdictNotLoggedError",
    "VerdictNotLoggedWarning",
    "attach_scored",
    "stream_generation",
]
