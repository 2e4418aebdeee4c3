"""Evaluation: how well a risk score separates hallucinations from correct answers.

Hallucination / incorrect answer = positive class (label 1); higher score = riskier.
AUROC is reported as measured, never folded into ``max(auc, 1 - auc)`` (SPEC §4).
"""

from spill_guard.evaluation.metrics import (
    DegenerateLabelsError,
    MetricInputError,
    MetricReport,
    aurc,
    auroc,
    auroc_ci,
    evaluate,
    fpr_at_tpr,
    prr,
    risk_coverage,
    roc_curve,
)

__all__ = [
    "DegenerateLabelsError",
    "MetricInputError",
    "MetricReport",
    "aurc",
    "auroc",
    "auroc_ci",
    "evaluate",
    "fpr_at_tpr",
    "prr",
    "risk_coverage",
    "roc_curve",
]
