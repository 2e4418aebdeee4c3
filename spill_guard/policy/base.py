"""The policy interface: what to do with an answer once it has a risk score.

A policy sees a :class:`Candidate` (an answer, its risk score, whether it crossed the
threshold) and returns a :class:`Decision`. Policies never call a model themselves: when
one wants another answer (retry), it asks the ``regenerate`` callable its caller supplies,
so the same policy object works for the guard, a LangChain chain or a LlamaIndex engine.
"""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from spill_guard.errors import InvalidParameterError
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import Prompt


class Action(str, enum.Enum):
    """What happened to an answer. ``RAISED``: the caller raises ``HallucinationDetected``."""

    PASSED = "passed"
    FLAGGED = "flagged"
    ABSTAINED = "abstained"
    RAISED = "raised"


@dataclass(frozen=True)
class Candidate:
    """One answer, assessed: ``risk`` is higher = riskier (``None`` when it could not be scored).

    ``payload`` carries whatever the caller needs to build its result (the guard keeps the
    :class:`~spill_guard.ScoredAnswer` and span there); policies never look inside it.
    """

    answer: str
    risk: float | None
    flagged: bool
    strategy: str = "greedy"
    reason: str = ""
    payload: Any = field(default=None, compare=False, repr=False)
    prompt_ids: tuple[int, ...] = field(default=(), compare=False, repr=False)  # what the model was fed

    @property
    def sort_key(self) -> float:
        """Unscorable answers rank as the riskiest, so any scored answer is preferred."""
        return math.inf if self.risk is None or math.isnan(self.risk) else self.risk


@runtime_checkable
class RetryStrategy(Protocol):
    """How to get another answer: it acts, returning the prompt and params of attempt ``attempt``
    (2, 3, ...) from those of the first answer (:mod:`spill_guard.policy.strategies`)."""

    @property
    def name(self) -> str: ...

    def next_attempt(
        self, prompt: Prompt, params: GenerationParams, attempt: int
    ) -> tuple[Prompt, GenerationParams]: ...


Regenerate = Callable[[RetryStrategy, int], Candidate]
"""``regenerate(strategy, attempt_number)`` returns a fresh candidate (attempt 2, 3, ...)."""


@dataclass(frozen=True)
class Decision:
    """A policy's verdict: the action, the answer chosen, every attempt, and the text to show."""

    action: Action
    chosen: Candidate
    attempts: tuple[Candidate, ...]
    shown: str  # what the end user should see (the abstention reply when abstaining)


class Policy(ABC):
    """One method: turn a first candidate (plus optional regeneration) into a decision."""

    @abstractmethod
    def apply(self, candidate: Candidate, regenerate: Regenerate | None = None) -> Decision:
        """Decide on ``candidate``; ``regenerate`` is ``None`` when no new answer can be made."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


def apply_policy(policy: Policy, candidate: Candidate, regenerate: Regenerate | None = None) -> Decision:
    """Run ``policy`` on ``candidate``, checking first that it is a policy (a clear error if not)."""
    if not isinstance(policy, Policy):
        raise InvalidParameterError(
            f"policy must be a spill_guard.policy.Policy (Flag(), Abstain(), Retry(...), Raise()), got {policy!r}."
        )
    return policy.apply(candidate, regenerate)
