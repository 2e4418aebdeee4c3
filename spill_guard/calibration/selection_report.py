"""The record of a ``--select`` run: every candidate's cross-validated AUROC, the pick, the default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CandidateResult(BaseModel):
    """One scorer × pooling × locator, scored by k-fold cross-validated AUROC.

    In each fold the direction is learned on the other folds and the AUROC of the oriented
    score is measured on the held-out fold; ``coverage`` is the fraction of labelled answers
    on which the locator found a span (the rest cannot be scored by it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec: str
    locator: str
    cv_auroc_mean: float
    cv_auroc_sd: float
    folds_used: int
    coverage: float


class SelectionReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int
    min_coverage: float
    chosen: CandidateResult
    default: CandidateResult | None  # spilled_energy:mean on the full answer
    improvement: float | None  # chosen minus default, in cross-validated mean AUROC
    table: list[CandidateResult]  # best first; the top candidates only
