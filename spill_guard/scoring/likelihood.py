"""Likelihood baselines (SPEC §4): token NLL (→ G-NLL, mean NLL) and improbability (→ min prob)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spill_guard.capture.trace import TokenTrace
from spill_guard.scoring.base import TokenScorer


@dataclass(frozen=True)
class TokenNLL(TokenScorer):
    """``-log p_t(x_t)``. Sum-pooled: G-NLL; mean-pooled: log-perplexity."""

    name: str = "nll"
    sign_note: str = "negative log-probability (low probability = high risk)"

    def __call__(self, trace: TokenTrace) -> np.ndarray:
        return -trace.log_prob


@dataclass(frozen=True)
class TokenImprobability(TokenScorer):
    """``1 - p_t(x_t)``. Max-pooled: ``1 - min_t p_t(x_t)``, the min-token-probability baseline."""

    name: str = "improbability"
    sign_note: str = "1 - probability of the emitted token"

    def __call__(self, trace: TokenTrace) -> np.ndarray:
        return 1.0 - np.exp(trace.log_prob)
