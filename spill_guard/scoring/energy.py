"""Energy scorers from SPEC §1: spilled energy Δ, its E and F parts, and the reference variant.

With inverse temperature β and raw logits ``z_t``:
``E_t = -β z_t[x_t]``, ``F_t = -logsumexp(β z_t)``, ``Δ_t = E_t - F_{t+1}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spill_guard.capture.trace import TokenTrace
from spill_guard.scoring.base import BetaScorer


@dataclass(frozen=True)
class SpilledEnergy(BetaScorer):
    """``Δ_t = logsumexp(β z_{t+1}) - β z_t[x_t]`` (signed; pooling decides how to summarise).

    Higher when the emitted token had a low logit relative to the next state's free energy.
    """

    name: str = "spilled_energy"
    sign_note: str = "Δ as defined (no sign flip)"

    def __call__(self, trace: TokenTrace) -> np.ndarray:
        return trace.log_partition_at(self.beta)[1:] - self.beta * trace.chosen_logit


@dataclass(frozen=True)
class TokenEnergy(BetaScorer):
    """``E_t = -β z_t[x_t]``: the energy of the emitted token (low logit = high risk)."""

    name: str = "token_energy"
    sign_note: str = "E as defined (no sign flip)"

    def __call__(self, trace: TokenTrace) -> np.ndarray:
        return -self.beta * trace.chosen_logit


@dataclass(frozen=True)
class MarginalEnergy(BetaScorer):
    """``F_t = -logsumexp(β z_t)``: free energy of the state that chose ``x_t``."""

    name: str = "marginal_energy"
    sign_note: str = "F as defined (no sign flip)"

    def __call__(self, trace: TokenTrace) -> np.ndarray:
        return -trace.log_partition_at(self.beta)[:-1]


@dataclass(frozen=True)
class ReferenceSpilledEnergy(BetaScorer):
    """``Δ'_t = logsumexp(β z_t) - β z_{t-1}[x_t]``: what the paper's public scripts compute.

    A comparison variant only (SPEC §1): it pairs the logit of ``x_t`` from one step too
    early. Undefined (NaN) for the first answer token, which those scripts also skip.
    """

    name: str = "spilled_energy_reference"
    sign_note: str = "Δ' as the reference scripts compute it (no sign flip)"

    def __call__(self, trace: TokenTrace) -> np.ndarray:
        return trace.log_partition_at(self.beta)[:-1] - self.beta * trace.previous_logit


@dataclass(frozen=True)
class PartitionShift(BetaScorer):
    """``logsumexp(β z_{t+1}) - logsumexp(β z_t)``: the part of Δ that is not the token's NLL.

    At β = 1, ``Δ_t = -log p_t(x_t) + PartitionShift_t`` (SPEC §1), so this isolates what
    spilled energy adds on top of the likelihood baselines.
    """

    name: str = "partition_shift"
    sign_note: str = "change of the log-partition across the step (no sign flip)"

    def __call__(self, trace: TokenTrace) -> np.ndarray:
        lp = trace.log_partition_at(self.beta)
        return lp[1:] - lp[:-1]
