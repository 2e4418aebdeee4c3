"""Threshold strategy ``conformal``: a finite-sample bound on false flags of correct answers.

Rule: with ``n`` correct calibration answers and their risks sorted ``R_(1) ≤ … ≤ R_(n)``,
``k = ⌈(n + 1)(1 − α)⌉`` and the threshold is ``R_(k)``; an answer is flagged when its risk is
*strictly* above it.

Guarantee (split-conformal, marginal): if the risk of a new correct answer and the risks of
the ``n`` calibration correct answers are exchangeable (e.g. i.i.d. draws from the same
questions, model, prompt and scorer), then

    P(new correct answer flagged) ≤ (n + 1 − k)/(n + 1) ≤ α,

where the probability is over *both* the draw of the calibration set and the new answer. It
is not a statement about one fixed calibration set: a particular threshold can have a
false-flag rate above α (the rate over calibration draws follows a Beta distribution around
``(n + 1 − k)/(n + 1)``). Ties only lower the rate. It says nothing about recall of incorrect
answers, and nothing once the questions, model or prompt change (re-calibrate then).

When ``k > n`` (fewer than ``⌈1/α − 1⌉`` correct answers) no data value works: the
threshold is ``+inf`` (never flag) and a :class:`ConformalWarning` says how many correct
answers α needs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from spill_guard.calibration.false_flag import check_target


class ConformalWarning(UserWarning):
    """The calibration set has too few correct answers for the requested α: it never flags."""


def conformal_rank(n: int, alpha: float) -> int:
    """``k = ⌈(n + 1)(1 − α)⌉`` (1-based rank of the threshold among ``n`` sorted correct risks)."""
    return math.ceil((n + 1) * (1.0 - alpha) - 1e-12)  # epsilon: 0.9 * 10 must stay 9, not 9.000…1


def correct_needed(alpha: float) -> int:
    """Fewest correct answers for which ``k ≤ n``, i.e. a finite conformal threshold at α."""
    n = 1
    while conformal_rank(n, alpha) > n:
        n += 1
    return n


@dataclass(frozen=True)
class ConformalStrategy:
    target: float = 0.1
    name: str = "conformal"

    def __post_init__(self) -> None:
        check_target(self.target, self.name)

    def threshold(self, risk_correct: np.ndarray, risk_incorrect: np.ndarray) -> float:
        good = np.sort(risk_correct)
        n = len(good)
        k = conformal_rank(n, self.target)
        if k > n:
            warnings.warn(
                f"conformal α = {self.target:g} needs at least {correct_needed(self.target)} correct calibration "
                f"answers, there are {n}: the threshold is +inf and nothing will be flagged. Label more "
                "correct answers or raise the target.",
                ConformalWarning,
                stacklevel=3,
            )
            return math.inf
        return float(good[k - 1])
