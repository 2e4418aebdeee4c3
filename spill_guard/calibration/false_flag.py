"""Threshold strategy ``false-flag``: the highest recall with at most α false flags on correct answers.

Among thresholds whose *empirical* false-flag rate on the calibration correct answers is
``≤ α`` (flag ``risk > t``), take one with the largest recall of incorrect answers, and
among those the one with the fewest false flags.

This is a plug-in rule: it holds ``≤ α`` on the calibration data exactly, but on fresh
data its expected false-flag rate can exceed α by up to ``1/(n_correct + 1)`` (for
continuous scores it is ``(⌊n_correct·α⌋ + 1)/(n_correct + 1)`` at worst). For a
finite-sample guarantee use the ``conformal`` strategy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spill_guard.errors import InvalidParameterError


def check_target(target: float | None, strategy: str) -> float:
    if target is None or not isinstance(target, (int, float)) or not 0.0 < float(target) < 1.0:
        raise InvalidParameterError(
            f"strategy {strategy!r} needs a target false-flag rate strictly between 0 and 1, got {target!r}; "
            "e.g. 0.1 (at most 10 % of correct answers flagged)."
        )
    return float(target)


@dataclass(frozen=True)
class FalseFlagStrategy:
    target: float = 0.1
    name: str = "false-flag"

    def __post_init__(self) -> None:
        check_target(self.target, self.name)

    def threshold(self, risk_correct: np.ndarray, risk_incorrect: np.ndarray) -> float:
        good = np.sort(risk_correct)
        n = len(good)
        # The k-th smallest correct risk leaves n - k <= n·α correct answers strictly above it,
        # and no lower data value does, so it is the lowest admissible cut (highest recall).
        k = max(1, math.ceil(n * (1.0 - self.target) - 1e-12))
        t = float(good[k - 1])
        above = risk_incorrect[risk_incorrect > t]
        if len(above) == 0:
            return float(max(good[-1], np.max(risk_incorrect)))  # recall is 0 anyway: flag nothing
        # Same recall, fewer false flags: move the cut up to the last correct risk below the
        # next incorrect one.
        next_bad = float(above.min())
        between = good[(good > t) & (good < next_bad)]
        return float(between.max()) if len(between) else t
