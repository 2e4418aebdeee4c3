"""The scorer interface: a :class:`TokenTrace` in, one risk value per token out.

Direction is part of the contract: **higher = more likely a hallucination**, for every
scorer and after every pooling. A scorer whose natural quantity points the other way
(e.g. a probability) reports a transformed value and says so in ``sign_note``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import InvalidParameterError


@dataclass(frozen=True)
class TokenScorer(ABC):
    """Maps a trace ``[T]`` to per-token risk values ``[T]`` (float64, higher = riskier).

    Values may be NaN where a quantity is undefined by construction (documented per
    scorer); pooling skips those. Scorers never modify the trace.
    """

    name: str = ""
    sign_note: str = ""

    @abstractmethod
    def __call__(self, trace: TokenTrace) -> np.ndarray: ...


@dataclass(frozen=True)
class BetaScorer(TokenScorer, ABC):
    """A scorer with an inverse temperature ``beta`` (> 0, default 1)."""

    beta: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.beta, (int, float)) or not (0 < self.beta < float("inf")):
            raise InvalidParameterError(
                f"{type(self).__name__}: beta must be a finite number > 0, got {self.beta!r}; "
                "use 1.0 for the model's own temperature."
            )
