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

import numpy as np

from spill_guard.calibration.calibrator import make_strategy
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


@dataclass(frozen=True)
class LabelledRisks:
    """The risk ``rule`` gives each usable labelled record of a log, with its label (True = incorrect)."""

    risk: np.ndarray
    incorrect: np.ndarray
    skipped: list[str]


def labelled_risks(log: str | os.PathLike[str], rule: Any) -> LabelledRisks:
    """Score the labelled records of ``log`` (those with a trace) under ``rule``: what health and what-if read."""
    labelled = from_review_log(log)
    subset = labelled.scores(rule.spec, rule.locator)
    skipped = list(labelled.skipped)
    if subset.n_skipped:
        skipped.append(f"{subset.n_skipped} labelled answer(s) with no span or score under {rule.spec.name}")
    return LabelledRisks(rule.direction * subset.scores, subset.labels.astype(bool), skipped)


@dataclass(frozen=True)
class WhatIf:
    """What flagging ``risk > threshold`` would have done on the labelled records."""

    threshold: float
    false_flags: int
    correct: int
    false_flag_ci: tuple[float, float]  # Wilson 95 %
    caught: int  # flagged incorrect answers
    incorrect: int
    flagged_share: float

    @property
    def false_flag_rate(self) -> float:
        return self.false_flags / self.correct if self.correct else 0.0

    @property
    def recall(self) -> float:
        return self.caught / self.incorrect if self.incorrect else 0.0


def what_if(risks: LabelledRisks, threshold: float) -> WhatIf:
    """The false-flag rate (with its Wilson interval) and recall of ``threshold`` on ``risks``."""
    flagged = risks.risk > threshold
    correct = int((~risks.incorrect).sum())
    false_flags = int((flagged & ~risks.incorrect).sum())
    return WhatIf(
        threshold=float(threshold),
        false_flags=false_flags,
        correct=correct,
        false_flag_ci=binomial_ci(false_flags, correct),
        caught=int((flagged & risks.incorrect).sum()),
        incorrect=int(risks.incorrect.sum()),
        flagged_share=float(flagged.mean()) if len(flagged) else 0.0,
    )


def threshold_for_rate(risks: LabelledRisks, alpha: float) -> float:
    """The threshold the ``false-flag`` calibration strategy picks for target ``alpha`` on these labels."""
    strategy = make_strategy("false-flag", alpha)
    return float(strategy.threshold(risks.risk[~risks.incorrect], risks.risk[risks.incorrect]))


def threshold_health(
    log: str | os.PathLike[str],
    rule: Any,
    *,
    target: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    risks: LabelledRisks | None = None,
) -> ThresholdHealth:
    """``rule`` (a :class:`~spill_guard.guard.risk_rule.RiskRule`) on the labelled records of ``log``.

    ``risks``: :func:`labelled_risks` of the same log and rule when the caller has them already (the
    studio keeps them for its what-if), so the labelled records are read once.
    """
    if target is not None and not 0.0 <= target <= 1.0:
        raise InvalidParameterError(f"the false-flag target must be between 0 and 1, got {target!r}.")
    if risks is None:
        risks = labelled_risks(log, rule)
    incorrect = risks.incorrect
    outcome = what_if(risks, rule.threshold)
    both = 0 < int(incorrect.sum()) < len(incorrect)
    return ThresholdHealth(
        rule_version=rule.version,
        threshold=float(rule.threshold),
        spec=rule.spec.name,
        locator=rule.locator,
        labelled=len(incorrect),
        incorrect=int(incorrect.sum()),
        skipped=risks.skipped,
        metrics=measure(risks.risk, incorrect, rule.threshold, n_boot=n_boot, seed=seed) if both else None,
        false_flags=outcome.false_flags,
        correct=outcome.correct,
        false_flag_ci=outcome.false_flag_ci,
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
