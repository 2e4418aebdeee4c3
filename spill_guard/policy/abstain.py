"""``Abstain``: replace a risky answer by a fixed reply; the original stays in the decision."""

from __future__ import annotations

from spill_guard.errors import InvalidParameterError
from spill_guard.policy.base import Action, Candidate, Decision, Policy, Regenerate

DEFAULT_REPLY = "I'm not confident enough to answer that."


class Abstain(Policy):
    """Show ``reply`` instead of an answer that crossed the threshold."""

    def __init__(self, reply: str = DEFAULT_REPLY):
        if not isinstance(reply, str) or not reply.strip():
            raise InvalidParameterError(f"Abstain(reply=...) needs a non-empty text to show, got {reply!r}.")
        self.reply = reply

    def apply(self, candidate: Candidate, regenerate: Regenerate | None = None) -> Decision:
        if candidate.flagged:
            return Decision(Action.ABSTAINED, candidate, (candidate,), self.reply)
        return Decision(Action.PASSED, candidate, (candidate,), candidate.answer)
