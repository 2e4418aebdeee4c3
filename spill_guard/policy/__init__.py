"""Policies: what to do with a risky answer. Small composable objects, tenacity style.

Flag()                                     pass, mark risky answers
Abstain(reply=...)                         show a fixed reply instead of a risky answer
Retry(attempts=3, strategy=Resample(0.8),  new answers while risky; keep the lowest-risk;
      fallback=Abstain())                  then the fallback decides
Raise()                                    the caller raises HallucinationDetected
"""

from spill_guard.policy.abstain import DEFAULT_REPLY, Abstain
from spill_guard.policy.attempt_scope import RetryAttempt, attempt_scope, current_attempt
from spill_guard.policy.base import Action, Candidate, Decision, Policy, Regenerate, RetryStrategy, apply_policy
from spill_guard.policy.flag import Flag
from spill_guard.policy.raising import Raise
from spill_guard.policy.retry import Retry
from spill_guard.policy.strategies import Reprompt, Resample

__all__ = [
    "Abstain",
    "Action",
    "Candidate",
    "DEFAULT_REPLY",
    "Decision",
    "Flag",
    "Policy",
    "Raise",
    "Regenerate",
    "Reprompt",
    "Resample",
    "Retry",
    "RetryAttempt",
    "RetryStrategy",
    "apply_policy",
    "attempt_scope",
    "current_attempt",
]
