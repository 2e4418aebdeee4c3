"""The guard: generate → locate span → score → decide (calibrated rule) → act (policy) → log."""

from spill_guard.guard.early_stop import EarlyStop
from spill_guard.guard.guard import SpillGuard
from spill_guard.guard.risk_rule import RiskRule
from spill_guard.guard.verdict import AnswerSpan, Attempt, HallucinationDetected, TokenEvent, Verdict

__all__ = ["AnswerSpan", "Attempt", "EarlyStop", "HallucinationDetected", "RiskRule", "SpillGuard", "TokenEvent", "Verdict"]
