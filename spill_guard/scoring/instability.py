"""Dynamic instability (SPEC §4): how abruptly the next-token distribution moves, plus its entropy.

Per step, ``I_t = w · JSD(p_t, p_{t+1}) / ln 2 + (1 - w) · H_t / ln V``: both terms are
normalised to ``[0, 1]`` so ``w`` is a plain mixing weight. The trace is summarised by its
peak (max pooling). The JSD is computed online during capture from two consecutive rows,
so no ``[T, V]`` history is ever stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import InvalidParameterError
from spill_guard.scoring.base import TokenScorer


@dataclass(frozen=True)
class DynamicInstability(TokenScorer):
    """Mix of consecutive-step Jensen-Shannon divergence and entropy, in ``[0, 1]``."""

    name: str = "instability"
    sign_note: str = "larger divergence / entropy = higher risk"
    jsd_weight: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.jsd_weight <= 1.0:
            raise InvalidParameterError(f"jsd_weight must be in [0, 1], got {self.jsd_weight!r}.")

    def __call__(self, trace: TokenTrace) -> np.ndarray:
        trace.require_distribution_stats("instability")
        jsd = trace.jsd_next / math.log(2.0)
        ent = trace.entropy / math.log(max(trace.vocab_size, 2))
        return self.jsd_weight * jsd + (1.0 - self.jsd_weight) * ent
