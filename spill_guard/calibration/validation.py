"""How a fitted threshold behaves on labelled data: the numbers a calibration file records.

Measured on the calibration data itself, these are in-sample figures (optimistic for
``f1`` and ``false-flag``); ``bench/guard_eval.py`` measures the same on held-out data.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict

from spill_guard.evaluation.metrics import auroc, auroc_ci


def binomial_ci(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95 % interval for a proportion ``k/n`` (sensible at 0 and n, unlike Wald)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


class ValidationMetrics(BaseModel):
    """Detection quality of ``risk > threshold`` on a labelled set (incorrect = positive)."""

    model_config = ConfigDict(frozen=True)

    auroc: float
    auroc_ci: tuple[float, float]
    false_flag_rate: float  # flagged correct / correct
    recall: float  # flagged incorrect / incorrect (true-flag rate)
    f1: float
    abstention_rate: float  # flagged / all
    accuracy_before: float  # correct / all
    accuracy_after: float  # correct among unflagged (1.0 by convention when everything is flagged)


def measure(
    risk: np.ndarray, incorrect: np.ndarray, threshold: float, *, n_boot: int = 1000, seed: int = 0
) -> ValidationMetrics:
    """Metrics of flagging ``risk > threshold`` against labels (True = incorrect)."""
    flagged = risk > threshold
    bad = incorrect.astype(bool)
    tp = int((flagged & bad).sum())
    n_flag = int(flagged.sum())
    kept = ~flagged
    return ValidationMetrics(
        auroc=auroc(risk, bad),
        auroc_ci=auroc_ci(risk, bad, n_boot=n_boot, seed=seed),
        false_flag_rate=float((flagged & ~bad).sum() / max(1, (~bad).sum())),
        recall=float(tp / max(1, bad.sum())),
        f1=float(2 * tp / (n_flag + bad.sum())) if (n_flag + bad.sum()) else 0.0,
        abstention_rate=float(n_flag / len(risk)),
        accuracy_before=float((~bad).mean()),
        accuracy_after=float((~bad[kept]).mean()) if kept.any() else 1.0,
    )
