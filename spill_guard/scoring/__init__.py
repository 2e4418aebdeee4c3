"""Scoring: per-token risk values from a trace, pooled over a token range. Higher = riskier."""

from spill_guard.scoring.base import BetaScorer, TokenScorer
from spill_guard.scoring.energy import (
    MarginalEnergy,
    PartitionShift,
    ReferenceSpilledEnergy,
    SpilledEnergy,
    TokenEnergy,
)
from spill_guard.scoring.entropy import TokenEntropy
from spill_guard.scoring.instability import DynamicInstability
from spill_guard.scoring.likelihood import TokenImprobability, TokenNLL
from spill_guard.scoring.pooling import POOLINGS, pool
from spill_guard.scoring.specs import BASELINES, DEFAULT_SPEC, ScoreSpec, catalogue, make_scorer

__all__ = [
    "BASELINES",
    "BetaScorer",
    "DEFAULT_SPEC",
    "DynamicInstability",
    "MarginalEnergy",
    "POOLINGS",
    "PartitionShift",
    "ReferenceSpilledEnergy",
    "ScoreSpec",
    "SpilledEnergy",
    "TokenEnergy",
    "TokenEntropy",
    "TokenImprobability",
    "TokenNLL",
    "TokenScorer",
    "catalogue",
    "make_scorer",
    "pool",
]
