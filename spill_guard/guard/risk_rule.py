"""``RiskRule``: which score, on which span, oriented how, compared with which threshold.

It is the guard's whole decision rule, built either from a fixed ``threshold`` or from a
fitted calibration file (which also fixes the spec, span locator and score direction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spill_guard.errors import InvalidParameterError
from spill_guard.scoring.specs import ScoreSpec


@dataclass(frozen=True)
class RiskRule:
    """Flag an answer when ``direction × score(spec, span) > threshold``."""

    spec: ScoreSpec
    locator: str
    threshold: float
    direction: int = 1
    source: str = "threshold"  # "threshold" or "calibration:<where it came from>"

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, (int, float)) or math.isnan(self.threshold):
            raise InvalidParameterError(f"threshold must be a number, got {self.threshold!r}.")
        if self.direction not in (1, -1):
            raise InvalidParameterError(f"direction must be +1 or -1, got {self.direction!r}.")

    def risk(self, raw_score: float) -> float:
        return self.direction * raw_score

    def crosses(self, risk: float) -> bool:
        return risk > self.threshold
