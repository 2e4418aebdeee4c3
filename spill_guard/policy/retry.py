"""``Retry``: ask for new answers while the current one is risky; keep the lowest-risk one.

The attempt loop is tenacity's (stop after N attempts, retry while the result is flagged,
optional wait between attempts). When every attempt is flagged, a ``fallback`` policy
(``Abstain`` by default, or ``Flag``) decides on the lowest-risk answer.
"""

from __future__ import annotations

from typing import Any

from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_none

from spill_guard.errors import InvalidParameterError
from spill_guard.policy.abstain import Abstain
from spill_guard.policy.base import Action, Candidate, Decision, Policy, Regenerate, RetryStrategy
from spill_guard.policy.strategies import Resample


class Retry(Policy):
    """Up to ``attempts`` answers in all (the first included), then ``fallback`` if all are risky.

    Args:
        attempts: total number of answers to try, >= 2.
        strategy: how new answers are made (:class:`Resample` (default) or :class:`Reprompt`; each
            makes its attempt's prompt and params, :mod:`spill_guard.policy.strategies`).
        fallback: policy applied to the lowest-risk answer when every attempt is flagged.
        wait: a tenacity wait strategy between attempts (none by default: a local model).
    """

    def __init__(
        self,
        attempts: int = 3,
        strategy: RetryStrategy | None = None,
        fallback: Policy | None = None,
        wait: Any = None,
    ):
        if not isinstance(attempts, int) or attempts < 2:
            raise InvalidParameterError(
                "Retry(attempts=...) counts every answer including the first, so it must be an integer >= 2; "
                f"got {attempts!r}."
            )
        if strategy is not None and not isinstance(strategy, RetryStrategy):
            raise InvalidParameterError(
                f"Retry strategy must be Resample(...), Reprompt(...) or an object with a name and "
                f"next_attempt(prompt, params, attempt), got {strategy!r}."
            )
        if fallback is not None and (not isinstance(fallback, Policy) or isinstance(fallback, Retry)):
            raise InvalidParameterError(f"Retry fallback must be Flag(), Abstain(...) or Raise(), got {fallback!r}.")
        self.attempts = attempts
        self.strategy = strategy if strategy is not None else Resample()
        self.fallback = fallback if fallback is not None else Abstain()
        self.wait = wait if wait is not None else wait_none()

    def apply(self, candidate: Candidate, regenerate: Regenerate | None = None) -> Decision:
        if regenerate is None:  # e.g. an answer produced elsewhere: nothing to retry with
            return self.fallback.apply(candidate)
        tried: list[Candidate] = []

        def attempt() -> Candidate:
            number = len(tried) + 1
            current = candidate if number == 1 else regenerate(self.strategy, number)
            tried.append(current)
            return current

        Retrying(
            stop=stop_after_attempt(self.attempts),
            retry=retry_if_result(lambda c: c.flagged),
            wait=self.wait,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,  # out of attempts
            reraise=True,
        )(attempt)
        best = min(tried, key=lambda c: c.sort_key)  # first among equals: min is stable
        if not best.flagged:
            return Decision(Action.PASSED, best, tuple(tried), best.answer)
        fallback = self.fallback.apply(best)
        return Decision(fallback.action, best, tuple(tried), fallback.shown)
