"""``RiskRule``: which score, on which span, oriented how, compared with which threshold.

It is the guard's whole decision rule, built either from a fixed ``threshold`` or from a
fitted calibration file (which also fixes the spec, span locator and score direction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from spill_guard.calibration.consistency import Consistency
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
    #: Set by :func:`~spill_guard.guard.rule_from_calibration.resolve_rule`: the calibration's version
    #: and the rule it fixed (spec, locator, threshold, direction); see :attr:`version`.
    calibration: tuple[str, ScoreSpec, str, float, int] | None = field(default=None, repr=False)
    #: A :class:`~spill_guard.calibration.consistency.Consistency` with its cascade: answers whose one-pass
    #: risk lies in its band are sampled again and their final risk is compared with the threshold.
    second_opinion: Consistency | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, (int, float)) or math.isnan(self.threshold):
            raise InvalidParameterError(f"threshold must be a number, got {self.threshold!r}.")
        if self.direction not in (1, -1):
            raise InvalidParameterError(f"direction must be +1 or -1, got {self.direction!r}.")
        if self.second_opinion is not None:
            if not isinstance(self.second_opinion, Consistency):
                raise InvalidParameterError(
                    f"second_opinion must be a Consistency(...) from spill_guard, got {self.second_opinion!r}."
                )
            if self.second_opinion.cascade is None:
                raise InvalidParameterError(
                    "a guard's second opinion needs its band: Consistency(cascade=Cascade(low, high, weight)), "
                    "fitted by spill-guard calibrate --second-opinion K (or fit_cascade on labelled answers)."
                )

    @classmethod
    def of_calibration(
        cls,
        calibration: Any,
        source: str,
        *,
        spec: ScoreSpec | None = None,
        locator: str | None = None,
        second_opinion: Consistency | None = None,
    ) -> RiskRule:
        """The rule a :class:`~spill_guard.calibration.Calibration` fixes (its :attr:`version` is the
        calibration's); ``spec`` / ``locator`` replace its own (an override: the version then says so);
        ``second_opinion``: the rule's (see :func:`~spill_guard.guard.rule_from_calibration.resolve_rule`,
        which reconciles the calibration's with one given to the guard)."""
        fixed = ScoreSpec(calibration.scorer, calibration.pooling, calibration.beta)
        threshold, direction = float(calibration.threshold), int(calibration.direction)
        return cls(
            spec or fixed,
            locator or calibration.locator,
            threshold,
            direction,
            source,
            calibration=(calibration.version, fixed, calibration.locator, threshold, direction),
            second_opinion=second_opinion,
        )

    @property
    def version(self) -> str:
        """Which rule this is, as verdicts and review records name it: the calibration's
        :attr:`~spill_guard.calibration.Calibration.version` (``"cal-..."``) while the rule is the
        one that calibration fixed, else ``"threshold:<value>"`` (a fixed threshold, or a
        calibration's rule changed since, e.g. ``dataclasses.replace(rule, threshold=...)``)."""
        if self.calibration is not None and self.calibration[1:] == (
            self.spec,
            self.locator,
            self.threshold,
            self.direction,
        ):
            return self.calibration[0]
        return f"threshold:{float(self.threshold)!r}"

    def risk(self, raw_score: float) -> float:
        return self.direction * raw_score

    def crosses(self, risk: float) -> bool:
        return risk > self.threshold
