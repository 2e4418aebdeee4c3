"""How a retry gets a new answer: each strategy *acts*, producing its attempt's prompt and params.

A strategy is a small frozen value with one method, :meth:`next_attempt`: given the prompt
and :class:`~spill_guard.models.params.GenerationParams` of the first answer and the attempt
number (2, 3, ...), it returns what to generate next. Every door (library guard, server,
LangChain, LlamaIndex) calls that method, so a strategy means the same thing everywhere:

* :class:`Resample` samples the same prompt at ``temperature`` / ``top_p``, seeded by
  :func:`~spill_guard.models.params.retry_seed` from the call's seed (else the strategy's
  ``seed``) and the attempt number: the same question under the same settings repeats its retries.
* :class:`Reprompt` asks greedily with its instruction added at the end of the last user turn,
  after one space (:meth:`~spill_guard.models.prompting.Prompt.with_instruction`).

Write your own strategy as any object with a ``name`` and this ``next_attempt`` method.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from spill_guard.errors import InvalidParameterError
from spill_guard.models.params import GenerationParams, retry_seed
from spill_guard.models.prompting import Prompt, check_text
from spill_guard.models.seeding import check_seed


@dataclass(frozen=True)
class Resample:
    """Sample a new answer at ``temperature`` / ``top_p``, seeded per attempt (so repeatable).

    Attempt ``k`` uses seed ``(s + k) mod 2**63`` where ``s`` is the call's own seed when it has
    one, else ``seed`` (default 0).
    """

    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise InvalidParameterError(f"Resample {name} must be a finite number, got {value!r}.")
        if not self.temperature > 0:
            raise InvalidParameterError(f"Resample temperature must be > 0, got {self.temperature!r}; try 0.7-1.0.")
        if not 0 < self.top_p <= 1:
            raise InvalidParameterError(f"Resample top_p must be in (0, 1], got {self.top_p!r}.")
        check_seed(self.seed, "Resample seed")

    @property
    def name(self) -> str:
        return f"resample@{self.temperature:g}"

    def next_attempt(self, prompt: Prompt, params: GenerationParams, attempt: int) -> tuple[Prompt, GenerationParams]:
        base = params.seed if params.seed is not None else self.seed
        return prompt, params.sampled(self.temperature, self.top_p, retry_seed(base, attempt))


DEFAULT_REPROMPT = "Answer briefly and only with facts you are sure of."


@dataclass(frozen=True)
class Reprompt:
    """Ask again, greedily, with ``instruction`` added at the end of the last user turn (after one space)."""

    instruction: str = DEFAULT_REPROMPT

    def __post_init__(self) -> None:
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise InvalidParameterError(f"Reprompt needs a non-empty instruction, got {self.instruction!r}.")
        check_text(self.instruction, "Reprompt instruction")

    @property
    def name(self) -> str:
        return "reprompt"

    def next_attempt(self, prompt: Prompt, params: GenerationParams, attempt: int) -> tuple[Prompt, GenerationParams]:
        return prompt.with_instruction(self.instruction), params.greedy_copy()
