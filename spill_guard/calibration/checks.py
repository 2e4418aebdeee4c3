"""Validation of labelled scores and the choice of score direction.

A threshold fitted on too little data, or on one class only, would be trusted by users as
if it meant something; so fitting refuses such data outright instead of returning a number.

Direction: on small models a score can point the wrong way on a task (SPEC §4), so the
orientation is learned from the calibration data (AUROC of the raw score, incorrect =
positive) and recorded. Everything downstream works on ``risk = direction × score``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from spill_guard.calibration.errors import CalibrationError
from spill_guard.evaluation.metrics import auroc

#: Fewest incorrect (label True) and fewest correct answers a calibration accepts.
MIN_PER_CLASS = 10
#: Fewest labelled answers overall.
MIN_TOTAL = 30


def validate(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(float scores, bool labels)`` after checking shapes, finiteness and class sizes.

    Labels: ``True``/1 = hallucination / incorrect answer, ``False``/0 = correct.

    Raises:
        CalibrationError: with the offending indices or counts, and what to do instead.
    """
    s = np.asarray(scores, dtype=np.float64)
    raw = np.asarray(labels)
    if s.ndim != 1 or raw.ndim != 1 or len(s) != len(raw):
        raise CalibrationError(
            f"scores and labels must be 1-D and of equal length, got shapes {s.shape} and {raw.shape}; "
            "pass one label per score, in the same order."
        )
    if raw.dtype != np.bool_:
        if raw.dtype.kind not in "iuf" or not np.isin(raw, (0, 1)).all():
            bad = raw[~np.isin(raw, (0, 1))][:5].tolist() if raw.dtype.kind in "iuf" else raw[:5].tolist()
            raise CalibrationError(
                f"labels must be booleans or 0/1 (1 = incorrect), found e.g. {bad!r}; binarise them first."
            )
    y = raw.astype(bool)
    bad_idx = np.flatnonzero(~np.isfinite(s))
    if len(bad_idx):
        shown = ", ".join(str(i) for i in bad_idx[:10]) + (" ..." if len(bad_idx) > 10 else "")
        raise CalibrationError(
            f"{len(bad_idx)} non-finite score(s) (NaN or ±inf) at indices {shown}; a threshold cannot be "
            "placed among them. Drop those answers (and their labels), or choose another scorer."
        )
    n_bad, n_good = int(y.sum()), int((~y).sum())
    if n_bad == 0 or n_good == 0:
        raise CalibrationError(
            f"only one class present ({n_bad} incorrect, {n_good} correct); calibration needs labelled "
            "examples of both correct and incorrect answers."
        )
    if n_bad < MIN_PER_CLASS or n_good < MIN_PER_CLASS or len(s) < MIN_TOTAL:
        raise CalibrationError(
            f"too few labelled answers: {n_bad} incorrect, {n_good} correct, {len(s)} in all; calibration "
            f"needs at least {MIN_PER_CLASS} of each class and {MIN_TOTAL} overall. Label more answers "
            "(from a task: a larger --n; from a review log: `spill-guard review label` more records)."
        )
    return s, y


def choose_direction(scores: np.ndarray, labels: np.ndarray) -> tuple[int, float]:
    """``(direction, raw_auroc)``: +1 if higher raw scores go with incorrect answers, else -1.

    A tie (AUROC exactly 0.5) keeps the library convention, +1 (higher = riskier).
    """
    raw = auroc(scores, labels)
    return (1 if raw >= 0.5 else -1), float(raw)
