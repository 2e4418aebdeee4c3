"""``--select``: choose scorer × pooling × locator by k-fold cross-validated AUROC.

Folds are assigned by a hash of the item id, so the same item never sits on both sides
(and the folds do not depend on input order). In each fold the score's direction is learned
on the other k − 1 folds — exactly what calibration will do — and the AUROC of the oriented
score is measured on the held-out fold; a candidate is ranked by the mean over folds.
Candidates whose locator finds a span on fewer than ``min_coverage`` of the answers are not
eligible (a guard cannot score answers without a span).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from spill_guard.calibration.checks import choose_direction
from spill_guard.calibration.data import CalibrationSet, ScoredSubset
from spill_guard.calibration.errors import CalibrationError
from spill_guard.calibration.selection_report import CandidateResult, SelectionReport
from spill_guard.evaluation.metrics import auroc
from spill_guard.scoring.specs import DEFAULT_SPEC, ScoreSpec, catalogue

SELECT_LOCATORS = ("full", "answer_is", "numeric", "quoted+answer_is+strip_filler")
DEFAULT_LOCATOR = "full"
TABLE_ROWS = 10


def fold_of(group: str, k: int) -> int:
    return int.from_bytes(hashlib.sha256(f"spill_guard-fold:{group}".encode()).digest()[:4], "big") % k


def cv_auroc(subset: ScoredSubset, k: int) -> tuple[float, float, int]:
    """``(mean, sd, folds used)`` of held-out AUROC; folds lacking a class on either side are skipped."""
    folds = np.array([fold_of(g, k) for g in subset.groups])
    s, y = subset.scores, subset.labels
    aucs = []
    for f in range(k):
        train, test = folds != f, folds == f
        if not (y[train].any() and (~y[train]).any() and y[test].any() and (~y[test]).any()):
            continue
        direction, _ = choose_direction(s[train], y[train])
        aucs.append(auroc(direction * s[test], y[test]))
    if not aucs:
        return float("nan"), float("nan"), 0
    return float(np.mean(aucs)), float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0, len(aucs)


def evaluate_candidate(cset: CalibrationSet, spec: ScoreSpec, locator: str, k: int) -> CandidateResult:
    subset = cset.scores(spec, locator)
    mean, sd, used = cv_auroc(subset, k) if len(subset.scores) else (float("nan"), float("nan"), 0)
    return CandidateResult(
        spec=spec.name,
        locator=locator,
        cv_auroc_mean=mean,
        cv_auroc_sd=sd,
        folds_used=used,
        coverage=len(subset.scores) / max(1, len(cset)),
    )


def select_config(
    cset: CalibrationSet,
    *,
    specs: Sequence[ScoreSpec] | None = None,
    locators: Sequence[str] = SELECT_LOCATORS,
    k: int = 5,
    min_coverage: float = 0.9,
) -> SelectionReport:
    """Rank every candidate; the report's ``chosen`` is the best eligible one."""
    if k < 2:
        raise CalibrationError(f"cross-validation needs k >= 2 folds, got {k}.")
    specs = list(specs) if specs is not None else catalogue()
    results = [evaluate_candidate(cset, spec, loc, k) for loc in locators for spec in specs]
    eligible = [r for r in results if r.folds_used >= 2 and r.coverage >= min_coverage]
    if not eligible:
        raise CalibrationError(
            f"no candidate could be cross-validated with {k} folds and span coverage >= {min_coverage:g}; "
            "label more answers (both classes in every fold) or lower the number of folds."
        )
    ranked = sorted(eligible, key=lambda r: (-r.cv_auroc_mean, r.cv_auroc_sd, r.spec, r.locator))
    default = next((r for r in results if r.spec == DEFAULT_SPEC.name and r.locator == DEFAULT_LOCATOR), None)
    if default is not None and default.folds_used == 0:
        default = None
    chosen = ranked[0]
    return SelectionReport(
        k=k,
        min_coverage=min_coverage,
        chosen=chosen,
        default=default,
        improvement=(chosen.cv_auroc_mean - default.cv_auroc_mean) if default is not None else None,
        table=ranked[:TABLE_ROWS],
    )
