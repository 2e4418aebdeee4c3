"""Which rule to measure a review log's labels against, when the user names none.

One resolution for ``spill-guard review health`` and the review studio's health page: a
calibration given by the user; else the packaged calibration that judged the log's newest record
(known by its ``rule_version``); else a fixed threshold (given, or the newest record's own
threshold, spec and span: risk = score).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spill_guard.calibration import Calibration
from spill_guard.calibration.packaged import packaged_calibrations
from spill_guard.guard.risk_rule import RiskRule
from spill_guard.review.errors import ReviewLogError
from spill_guard.review.terminal import printable
from spill_guard.scoring.specs import ScoreSpec


@dataclass(frozen=True)
class LogRule:
    rule: RiskRule
    target: float | None  # the false-flag target to hold it to (the calibration's unless one was given)
    source: str  # where the rule came from, in words
    calibration: Calibration | None


def rule_for_log(
    newest: Any,
    *,
    location: str,
    calibration: Calibration | None = None,
    calibration_name: str | None = None,
    threshold: float | None = None,
    target: float | None = None,
) -> LogRule:
    """The rule for a log whose newest record is ``newest`` (a ReviewRecord, or None for an empty log)."""
    where = f"calibration {printable(calibration_name)}" if calibration_name else "the given calibration"
    if calibration is None and threshold is None and newest is not None:  # a packaged one is known by its version
        calibration = next((c for c in packaged_calibrations() if c.version == newest.rule_version), None)
        where = f"the packaged calibration that judged the newest record ({newest.short_id})"
    if calibration is not None:
        rule = RiskRule.of_calibration(calibration, "calibration")
        return LogRule(rule, calibration.target if target is None else target, where, calibration)
    if newest is None and threshold is None:
        raise ReviewLogError(f"review log {printable(location)} has no records; pass --calibration or --threshold.")
    if newest is None:
        raise ReviewLogError(
            f"review log {printable(location)} has no records to take the spec and span from; pass --calibration FILE."
        )
    value = newest.threshold if threshold is None else threshold
    if value is None:
        raise ReviewLogError("the newest record names no threshold; pass --calibration FILE or --threshold X.")
    rule = RiskRule(ScoreSpec.parse(newest.spec), newest.locator, float(value))
    where = (
        "--threshold"
        if threshold is not None
        else f"the threshold, spec and span of the newest record ({newest.short_id}), risk = score"
    )
    return LogRule(rule, target, where, None)
