"""Calibration: turn a risk score into a threshold you can trust for your model and task.

    >>> from spill_guard.calibration import ThresholdCalibrator
    >>> fitted = ThresholdCalibrator(strategy="conformal", target=0.1).fit(scores, labels)
    >>> fitted.decide(new_scores)                   # True = flag (labels: True = incorrect)

A saved :class:`Calibration` records the threshold with the model, tokenizer, prompt,
scorer and span it is valid for; ``default_calibration("smollm2-135m-instruct")`` is the
one shipped for the embedded model (a guard also finds it by the model's fingerprint when the
model was loaded under another name or path). See docs/calibration.md.
"""

from spill_guard.calibration.calibrator import STRATEGIES, FittedThreshold, ThresholdCalibrator, make_strategy
from spill_guard.calibration.checks import MIN_PER_CLASS, MIN_TOTAL
from spill_guard.calibration.conformal import ConformalStrategy, ConformalWarning
from spill_guard.calibration.data import CalibrationSet, LabelledAnswer, from_bench, from_review_log, from_task
from spill_guard.calibration.errors import CalibrationError, CalibrationFileError, CalibrationMismatchError
from spill_guard.calibration.f1 import F1Strategy
from spill_guard.calibration.false_flag import FalseFlagStrategy
from spill_guard.calibration.file import (
    SCHEMA_VERSION,
    Calibration,
    CalibrationMismatchWarning,
    DataSource,
    SampleSizes,
    SecondOpinionFit,
    default_calibration,
)
from spill_guard.calibration.fingerprint import (
    ModelFingerprint,
    PromptInfo,
    TokenizerInfo,
    fingerprint,
    model_fingerprint,
)
from spill_guard.calibration.fitting import calibrate
from spill_guard.calibration.select import select_config
from spill_guard.calibration.validation import ValidationMetrics, binomial_ci

__all__ = [
    "MIN_PER_CLASS",
    "MIN_TOTAL",
    "SCHEMA_VERSION",
    "STRATEGIES",
    "Calibration",
    "CalibrationError",
    "CalibrationFileError",
    "CalibrationMismatchError",
    "CalibrationMismatchWarning",
    "CalibrationSet",
    "ConformalStrategy",
    "ConformalWarning",
    "DataSource",
    "F1Strategy",
    "FalseFlagStrategy",
    "FittedThreshold",
    "LabelledAnswer",
    "ModelFingerprint",
    "PromptInfo",
    "SampleSizes",
    "SecondOpinionFit",
    "ThresholdCalibrator",
    "TokenizerInfo",
    "ValidationMetrics",
    "binomial_ci",
    "calibrate",
    "default_calibration",
    "fingerprint",
    "from_bench",
    "from_review_log",
    "from_task",
    "make_strategy",
    "model_fingerprint",
    "select_config",
]
