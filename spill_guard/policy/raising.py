"""``Raise``: a risky answer becomes an exception (``HallucinationDetected``) for the caller."""

from __future__ import annotations

from spill_guard.policy.base import Action, Candidate, Decision, Policy, Regenerate


class Raise(Policy):
    """Decide ``raised`` for an answer that crossed the threshold.

    The policy only decides; the caller raises (after writing the review log, so a raised
    answer is never lost).
    """

    def apply(self, candidate: Candidate, regenerate: Regenerate | None = None) -> Decision:
        action = Action.RAISED if candidate.flagged else Action.PASSED
        return Decision(action, candidate, (candidate,), candidate.answer)
