"""``Flag``: every answer passes; risky ones are marked so the caller can show or log it."""

from __future__ import annotations

from spill_guard.policy.base import Action, Candidate, Decision, Policy, Regenerate


class Flag(Policy):
    """Pass the answer through; ``action`` is ``flagged`` when it crossed the threshold."""

    def apply(self, candidate: Candidate, regenerate: Regenerate | None = None) -> Decision:
        action = Action.FLAGGED if candidate.flagged else Action.PASSED
        return Decision(action, candidate, (candidate,), candidate.answer)
