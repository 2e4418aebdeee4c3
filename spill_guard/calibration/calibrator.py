"""``ThresholdCalibrator``: scikit-learn style fitting of a flagging threshold from labelled scores.

    >>> cal = ThresholdCalibrator(strategy="conformal", target=0.1)
    >>> fitted = cal.fit(scores, labels)          # labels: True = incorrect / hallucination
    >>> fitted.decide(new_scores)                  # bool array, True = flag

The fitted object is immutable. It records the direction learned from the data
(``risk = direction × score``), the threshold on that risk scale (flag ``risk > threshold``)
and the sample sizes; ``fitted.to_calibration(...)`` turns it into a savable
:class:`~spill_guard.calibration.file.Calibration`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike

from spill_guard.calibration.checks import choose_direction, validate
from spill_guard.calibration.conformal import ConformalStrategy
from spill_guard.calibration.f1 import F1Strategy
from spill_guard.calibration.false_flag import FalseFlagStrategy
from spill_guard.calibration.validation import ValidationMetrics, measure
from spill_guard.errors import InvalidParameterError

STRATEGIES = ("f1", "false-flag", "conformal")


class Strategy(Protocol):
    # Read-only: the strategies are frozen dataclasses, and false-flag/conformal narrow target to float.
    @property
    def name(self) -> str: ...

    @property
    def target(self) -> float | None: ...

    def threshold(self, risk_correct: np.ndarray, risk_incorrect: np.ndarray) -> float: ...


def make_strategy(name: str, target: float | None = 0.1) -> Strategy:
    """Build a strategy by name (``f1``, ``false-flag``, ``conformal``); ``target`` = α."""
    key = name.replace("_", "-") if isinstance(name, str) else name
    if key == "f1":
        return F1Strategy()
    if key == "false-flag":
        return FalseFlagStrategy(target=target)  # type: ignore[arg-type]
    if key == "conformal":
        return ConformalStrategy(target=target)  # type: ignore[arg-type]
    raise InvalidParameterError(f"unknown calibration strategy {name!r}; choose one of {list(STRATEGIES)}.")


@dataclass(frozen=True)
class FittedThreshold:
    """A fitted threshold: flag when ``direction × score > threshold``."""

    strategy: str
    target: float | None
    direction: int
    raw_auroc: float  # AUROC of the raw score (before orientation) on the calibration data
    threshold: float
    n: int
    n_correct: int
    n_incorrect: int
    metrics: ValidationMetrics

    def risk(self, scores: ArrayLike) -> np.ndarray:
        return self.direction * np.asarray(scores, dtype=np.float64)

    def decide(self, scores: ArrayLike) -> np.ndarray:
        """True where the score is flagged (riskier than the threshold)."""
        return self.risk(scores) > self.threshold

    def to_calibration(self, **metadata: Any) -> Any:
        """A :class:`Calibration` with this fit and the given metadata (model, tokenizer, spec...)."""
        from spill_guard.calibration.file import Calibration

        return Calibration.from_fit(self, **metadata)


class ThresholdCalibrator:
    """Configuration of a calibration; :meth:`fit` returns a :class:`FittedThreshold`.

    Args:
        strategy: ``"f1"``, ``"false-flag"`` or ``"conformal"`` (see their modules).
        target: the false-flag rate α on correct answers (ignored by ``f1``).
        n_boot, seed: bootstrap of the recorded AUROC interval.
    """

    def __init__(self, strategy: str = "conformal", target: float | None = 0.1, *, n_boot: int = 1000, seed: int = 0):
        self.strategy = make_strategy(strategy, target)
        self.n_boot = n_boot
        self.seed = seed

    def __repr__(self) -> str:
        return f"ThresholdCalibrator(strategy={self.strategy.name!r}, target={self.strategy.target!r})"

    def fit(self, scores: ArrayLike, labels: ArrayLike) -> FittedThreshold:
        """Learn direction and threshold from ``scores`` and ``labels`` (True = incorrect)."""
        s, y = validate(scores, labels)
        direction, raw = choose_direction(s, y)
        risk = direction * s
        threshold = self.strategy.threshold(risk[~y], risk[y])
        if not math.isfinite(threshold) and threshold < 0:
            threshold = -math.inf
        return FittedThreshold(
            strategy=self.strategy.name,
            target=self.strategy.target,
            direction=direction,
            raw_auroc=raw,
            threshold=float(threshold),
            n=len(s),
            n_correct=int((~y).sum()),
            n_incorrect=int(y.sum()),
            metrics=measure(risk, y, threshold, n_boot=self.n_boot, seed=self.seed),
        )
