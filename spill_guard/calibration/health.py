"""Does the threshold still hold? A rule measured on the human labels a review log has gathered.

:func:`threshold_health` scores the labelled records of a log (those stored with their trace, as
``spill-guard calibrate --from-log`` reads them: :func:`~spill_guard.calibration.data.from_review_log`)
under a :class:`~spill_guard.guard.risk_rule.RiskRule` and reports what a calibration records
(:func:`~spill_guard.calibration.validation.measure`: AUROC with its bootstrap CI, false-flag rate,
recall, ...), the false flags among correct answers with a Wilson 95 % interval against a target,
and, over every record of the log, how often the guard flagged per day. The same functions as a
calibration, on the same labels, give the same numbers.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from spill_guard.calibration.data import from_review_log
from spill_guard.calibration.validation import ValidationMetrics, binomial_ci, measure
from spill_guard.errors import InvalidParameterError


@dataclass(frozen=True)
class DayCount:
    """Records written on one UTC day and how many of them the guard flagged."""

    day: str
    records: int
    flagged: int

    @property
    def flag_rate(self) -> float:
        return self.flagged / self.records if self.records else 0.0


@dataclass(frozen=True)
class ThresholdHealth:
    """A rule's numbers on a log's labels (see the module docstring)."""

    rule_version: str
    threshold: float
    spec: str
    locator: str
    labelled: int  # labelled records usable for scoring
    incorrect: int
    skipped: list[str]  # labelled records left out, each "record <id>: <why>"
    metrics: ValidationMetrics | None  # None unless both labels occur
    false_flags: int  # flagged correct answers
    correct: int
    false_flag_ci: tuple[float, float]  # Wilson 95 % interval of false_flags / correct
    target: float | None
    by_day: list[DayCount] = field(default_factory=list)

    @property
    def holds(self) -> bool | None:
        """Whether the false-flag rate's interval contains or lies below ``target`` (None without one)."""
        if self.target is None:
            return None
        return self.false_flag_ci[0] <= self.target

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["metrics"] = None if self.metrics is None else self.metrics.model_dump(mode="json")
        out["holds"] = self.holds
        out["by_day"] = [{**asdict(d), "flag_rate": d.flag_rate} for d in self.by_day]
        return out


def threshold_health(
    log: str | os.PathLike[str], rule: Any, *, target: float | None = None, n_boot: int = 1000, seed: int = 0
) -> ThresholdHealth:
    """``rule`` (a :class:`~spill_guard.guard.risk_rule.RiskRule`) on the labelled records of ``log``."""
    if target is not None and not 0.0 <= target <= 1.0:
        raise InvalidParameterError(f"the false-flag target must be between 0 and 1, got {target!r}.")
    labelled = from_review_log(log)
    subset = labelled.scores(rule.spec, rule.locator)
    risk = rule.direction * subset.scores
    incorrect = subset.labels
    correct = int((~incorrect).sum())
    false_flags = int(((risk > rule.threshold) & ~incorrect).sum())
    both = 0 < int(incorrect.sum()) < len(incorrect)
    skipped = list(labelled.skipped)
    if subset.n_skipped:
        skipped.append(f"{subset.n_skipped} labelled answer(s) with no span or score under {rule.spec.name}")
    return ThresholdHealth(
        rule_version=rule.version,
        threshold=float(rule.threshold),
        spec=rule.spec.name,
        locator=rule.locator,
        labelled=len(incorrect),
        incorrect=int(incorrect.sum()),
        skipped=skipped,
        metrics=measure(risk, incorrect, rule.threshold, n_boot=n_boot, seed=seed) if both else None,
        false_flags=false_flags,
        correct=correct,
        false_flag_ci=binomial_ci(false_flags, correct),
        target=target,
        by_day=flags_by_day(log),
    )


def flags_by_day(log: str | os.PathLike[str]) -> list[DayCount]:
    """Per UTC day (from each record's ``created_at``), records written and records flagged, oldest first."""
    from spill_guard.review import open_log

    with open_log(os.fspath(log)) as sink:
        records = sink.records()
    written: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    for record in records:
        day = record.created_at[:10]
        written[day] += 1
        flagged[day] += bool(record.flagged)
    return [DayCount(day, written[day], flagged[day]) for day in sorted(written)]
