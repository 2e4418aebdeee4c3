"""Predictive entropy baseline (SPEC §4): ``H_t`` of the distribution that chose ``x_t``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spill_guard.capture.trace import TokenTrace
from spill_guard.scoring.base import TokenScorer


@dataclass(frozen=True)
class TokenEntropy(TokenScorer):
    """``H_t = -Σ_v p_t[v] log p_t[v]`` in nats (uncertain step = high risk)."""

    name: str = "entropy"
    sign_note: str = "entropy as defined"

    def __call__(self, trace: TokenTrace) -> np.ndarray:
        trace.require_distribution_stats("entropy")
        return trace.entropy.copy()
