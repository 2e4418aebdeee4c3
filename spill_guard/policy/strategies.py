"""How a retry gets a new answer. The caller's ``regenerate`` reads these small value objects."""

from __future__ import annotations

from dataclasses import dataclass

from spill_guard.errors import InvalidParameterError


@dataclass(frozen=True)
class Resample:
    """Sample a new answer at ``temperature`` / ``top_p`` (seeded per attempt, so repeatable)."""

    temperature: float = 0.8
    top_p: float = 0.95

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise InvalidParameterError(f"Resample temperature must be > 0, got {self.temperature!r}; try 0.7-1.0.")
        if not 0 < self.top_p <= 1:
            raise InvalidParameterError(f"Resample top_p must be in (0, 1], got {self.top_p!r}.")

    @property
    def name(self) -> str:
        return f"resample@{self.temperature:g}"


DEFAULT_REPROMPT = "Answer briefly and only with facts you are sure of."


@dataclass(frozen=True)
class Reprompt:
    """Ask again with a different instruction (greedy), e.g. one that asks for care."""

    instruction: str = DEFAULT_REPROMPT

    def __post_init__(self) -> None:
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise InvalidParameterError(f"Reprompt needs a non-empty instruction, got {self.instruction!r}.")

    @property
    def name(self) -> str:
        return "reprompt"
