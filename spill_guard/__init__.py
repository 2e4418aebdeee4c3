"""spill_guard: detect hallucinations at inference time from a model's raw logits.

The public face is small: guard a model's answers (``SpillGuard``), or go one level down
and generate or re-score answers and read the scores (``SpillModel``). Higher score = more
likely a hallucination, for every scorer and pooling.

    >>> from spill_guard import SpillModel
    >>> sm = SpillModel.load()                      # embedded SmolLM2-135M-Instruct
    >>> [ans] = sm.generate("What is the capital of France?")
    >>> ans.answer, ans.score()                     # spilled_energy:mean on the answer's text: the guard's number
"""

from spill_guard._version import __version__
from spill_guard.calibration.cascade import Cascade
from spill_guard.capture import StreamingCapture, TokenTrace, generate_with_capture, teacher_forced_traces
from spill_guard.errors import (
    CaptureError,
    InvalidInputError,
    InvalidParameterError,
    ModelLoadError,
    ModelNotFoundError,
    NonFiniteLogitsError,
    PromptTooLongError,
    SpillGuardError,
)
from spill_guard.guard import (
    Consistency,
    EarlyStop,
    HallucinationDetected,
    SpillGuard,
    TokenEvent,
    Verdict,
    VerdictNotLoggedError,
    VerdictNotLoggedWarning,
)
from spill_guard.models import DEFAULT_MODEL, LoadedModel, load_model
from spill_guard.models.params import GenerationParams
from spill_guard.policy import Abstain, Action, Flag, Raise, Reprompt, Resample, Retry
from spill_guard.report import ScoredAnswer, TokenRecord
from spill_guard.scoring import BASELINES, DEFAULT_SPEC, ScoreSpec, catalogue
from spill_guard.spill_model import AsyncSpillModel, SpillModel

__all__ = [
    "Abstain",
    "Cascade",
    "Consistency",
    "Action",
    "BASELINES",
    "EarlyStop",
    "Flag",
    "HallucinationDetected",
    "Raise",
    "Reprompt",
    "Resample",
    "Retry",
    "SpillGuard",
    "TokenEvent",
    "Verdict",
    "VerdictNotLoggedError",
    "VerdictNotLoggedWarning",
    "CaptureError",
    "DEFAULT_MODEL",
    "DEFAULT_SPEC",
    "InvalidInputError",
    "InvalidParameterError",
    "LoadedModel",
    "ModelLoadError",
    "ModelNotFoundError",
    "NonFiniteLogitsError",
    "PromptTooLongError",
    "ScoreSpec",
    "ScoredAnswer",
    "SpillGuardError",
    "SpillModel",
    "AsyncSpillModel",
    "GenerationParams",
    "StreamingCapture",
    "TokenRecord",
    "TokenTrace",
    "__version__",
    "catalogue",
    "generate_with_capture",
    "load_model",
    "teacher_forced_traces",
]
