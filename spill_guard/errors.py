"""The exception hierarchy: one root, a subclass per thing that can go wrong.

Every message says what was wrong (echoing the offending value) and how to fix it.
Subclasses also inherit from the matching built-in (``ValueError``, ``FileNotFoundError``)
so code written against the standard library keeps working.
"""

from __future__ import annotations


class SpillGuardError(Exception):
    """Root of every error spill_guard raises on purpose."""


class InvalidParameterError(SpillGuardError, ValueError):
    """A configuration value is out of range (e.g. ``beta <= 0``, an unknown pooling)."""


class InvalidInputError(SpillGuardError, ValueError):
    """A question, prompt or answer cannot be scored as given (e.g. it is empty)."""


class PromptTooLongError(InvalidInputError):
    """The prompt does not fit in the model's context window."""


class ModelNotFoundError(SpillGuardError, FileNotFoundError):
    """The named model is neither installed, a local path, nor downloadable."""


class NonFiniteLogitsError(SpillGuardError, ArithmeticError):
    """The model produced NaN or +inf logits on the tokens being scored.

    ``-inf`` entries are legitimate (masked vocabulary) and are handled; NaN and ``+inf``
    mean the forward pass itself is broken (overflow in fp16, a bad checkpoint), and
    pooling them would silently produce a meaningless score.
    """

    def __init__(self, message: str, *, positions: list[int] | None = None):
        super().__init__(message)
        self.positions = positions or []


class CaptureError(SpillGuardError, RuntimeError):
    """The logit capture was used in a way that cannot give aligned per-token values."""


class ModelLoadError(SpillGuardError, ValueError):
    """A model file exists but cannot be read (a corrupt or truncated ``.gguf`` / ``.safetensors``)."""


class DependencyImportError(SpillGuardError, ImportError):
    """A module a load needs (``gguf``, ``safetensors``, a transformers modeling module) failed to import.

    An environment problem, not a bad model file: the message names the module and the
    command that installs or repairs it.
    """


class FinalStepNotComputedError(InvalidInputError):
    """A score needs ``z_(T+1)``, the logits after an answer's last token, and it was skipped.

    ``final_step="auto"`` (the guard's setting) skips that forward step when the answer ended
    on a stop token that carries no text: no answer span can include such a token, so its
    Δ is never read. Scoring a range that ends on it asks for the value anyway.
    """
