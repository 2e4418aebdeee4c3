"""Named score configurations: a scorer plus a pooling, e.g. ``spilled_energy:min``.

The catalogue below is what the CLI, the result JSON and the benchmarks enumerate. Every
entry is higher = riskier. Baselines carry the SPEC §4 names they are known by.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spill_guard.capture.step_stats import validate_betas
from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import InvalidInputError, InvalidParameterError
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
from spill_guard.scoring.pooling import POOLINGS, check_final_step, check_finite, check_pooling, pool, resolve_range

ENERGY_SCORERS = (
    "spilled_energy",
    "marginal_energy",
    "token_energy",
    "spilled_energy_reference",
    "partition_shift",
)
OTHER_SCORERS = ("nll", "improbability", "entropy", "instability")

#: Baselines of SPEC §4 by the names the literature uses.
BASELINES = {
    "min_token_prob": ("improbability", "max"),
    "g_nll": ("nll", "sum"),
    "mean_nll": ("nll", "mean"),
    "mean_entropy": ("entropy", "mean"),
    "max_entropy": ("entropy", "max"),
    "dynamic_instability": ("instability", "max"),
}


def make_scorer(name: str, beta: float = 1.0) -> TokenScorer:
    """Build a scorer by name; ``beta`` applies to the energy scorers only."""
    energy: dict[str, Callable[..., BetaScorer]] = {
        "spilled_energy": SpilledEnergy,
        "marginal_energy": MarginalEnergy,
        "token_energy": TokenEnergy,
        "spilled_energy_reference": ReferenceSpilledEnergy,
        "partition_shift": PartitionShift,
    }
    other: dict[str, Callable[[], TokenScorer]] = {
        "nll": TokenNLL,
        "improbability": TokenImprobability,
        "entropy": TokenEntropy,
        "instability": DynamicInstability,
    }
    if name in energy:
        return energy[name](beta=beta)
    if name in other:
        return other[name]()
    raise InvalidParameterError(f"unknown scorer {name!r}; choose one of {sorted(energy) + sorted(other)}.")


@dataclass(frozen=True)
class ScoreSpec:
    """A scorer, a pooling and a β; ``name`` is ``scorer:pooling`` (plus ``@beta`` if β ≠ 1)."""

    scorer: str
    pooling: str
    beta: float = 1.0

    def __post_init__(self) -> None:
        for field, value in (("scorer", self.scorer), ("pooling", self.pooling)):
            if not isinstance(value, str):
                raise InvalidParameterError(f"ScoreSpec {field} must be a name (a string), got {value!r}.")
        if isinstance(self.beta, bool):
            raise InvalidParameterError(f"beta must be a finite number > 0, got {self.beta!r}.")
        validate_betas((self.beta,))  # for every scorer, even those that ignore beta
        make_scorer(self.scorer, self.beta)  # validates the name
        check_pooling(self.pooling)
        # Only energy scorers read beta, and ``name`` omits it for the others: store 1.0 so that
        # equal scores compare equal and parse(spec.name) gives spec back.
        object.__setattr__(self, "beta", float(self.beta) if self.scorer in ENERGY_SCORERS else 1.0)

    @property
    def name(self) -> str:
        if self.beta == 1.0 or self.scorer not in ENERGY_SCORERS:
            return f"{self.scorer}:{self.pooling}"
        short = f"{self.beta:g}"  # '0.5', '2'; exact repr only when the short form would not parse back
        return f"{self.scorer}:{self.pooling}@{short if float(short) == self.beta else repr(self.beta)}"

    @classmethod
    def parse(cls, text: str) -> ScoreSpec:
        """Parse ``scorer:pooling[@beta]`` or a baseline name such as ``g_nll``."""
        if not isinstance(text, str):
            raise InvalidParameterError(
                f"a score spec is text like 'spilled_energy:mean' or 'spilled_energy:min@0.5', got {text!r}."
            )
        if text in BASELINES:
            return cls(*BASELINES[text])
        head, _, beta = text.partition("@")
        scorer, sep, pooling = head.partition(":")
        if not sep:
            raise InvalidParameterError(
                f"cannot parse score spec {text!r}; write 'scorer:pooling' (e.g. 'spilled_energy:min') "
                f"or a baseline name from {sorted(BASELINES)}."
            )
        try:
            b = float(beta) if beta else 1.0
        except ValueError:
            raise InvalidParameterError(f"beta in {text!r} is not a number; e.g. 'spilled_energy:min@0.5'.") from None
        return cls(scorer, pooling, b)

    def values(self, trace: TokenTrace) -> np.ndarray:
        """Per-token values ``[T]`` (before pooling)."""
        return make_scorer(self.scorer, self.beta)(trace)

    def score(self, trace: TokenTrace, start: int | None = None, end: int | None = None) -> float:
        """Pooled score over tokens ``[start, end)`` (default: all answer tokens)."""
        s, e = resolve_range(trace, start, end)
        check_finite(trace, s, e)
        return self._pool_range(trace, self.values(trace), s, e)

    def _pool_range(self, trace: TokenTrace, values: np.ndarray, start: int, end: int) -> float:
        kept = values[start:end]
        check_final_step(trace, end, kept, self.name)
        return pool(kept, self.pooling)


#: The documented default: spilled energy, mean-pooled. Chosen on the dev split of the
#: built-in tasks with the embedded model, where the paper's headline min pooling pointed
#: the wrong way on two of three tasks (docs/benchmarks.md). ``spilled_energy:min`` stays
#: one name away.
DEFAULT_SPEC = ScoreSpec("spilled_energy", "mean")


#: Built once: every report enumerates it, and validating 36 specs per answer showed in profiles.
_CATALOGUE = tuple(ScoreSpec(s, p) for s in ENERGY_SCORERS + OTHER_SCORERS for p in POOLINGS)


def catalogue() -> list[ScoreSpec]:
    """Every scorer × pooling at β = 1 (what reports and benchmarks enumerate)."""
    return list(_CATALOGUE)


def pooled_catalogue(trace: TokenTrace, start: int | None = None, end: int | None = None) -> dict[str, float]:
    """Every catalogue score over tokens ``[start, end)`` (default: all), by spec name.

    Specs undefined there are left out. Same values as ``spec.score(trace, start, end)`` for
    each spec, but each scorer's per-token values are computed once for its four poolings.
    Raises :class:`~spill_guard.errors.NonFiniteLogitsError`
    like :meth:`ScoreSpec.score` when the answer has non-finite steps.
    """
    try:
        start, end = resolve_range(trace, start, end)
    except InvalidInputError:
        return {}  # no tokens: no spec is defined
    check_finite(trace, start, end)
    pooled: dict[str, float] = {}
    per_token: dict[tuple[str, float], np.ndarray] = {}
    undefined: set[tuple[str, float]] = set()
    for spec in _CATALOGUE:
        key = (spec.scorer, spec.beta)
        if key in undefined or (spec.scorer in _DISTRIBUTION_SCORERS and not trace.distribution_stats):
            continue  # not captured (stats="energy"), or already found undefined for another pooling
        try:
            if key not in per_token:
                per_token[key] = spec.values(trace)
            pooled[spec.name] = spec._pool_range(trace, per_token[key], start, end)
        except InvalidInputError:
            # Undefined for this answer (e.g. Δ' on a one-token answer, Δ without z_(T+1)). Whether it
            # is does not depend on the pooling, so the scorer's other poolings are skipped too.
            undefined.add(key)
    return pooled


#: Scorers that read per-step entropy/JSD, which a ``stats="energy"`` capture does not record
#: (they refuse such traces via ``TokenTrace.require_distribution_stats``).
_DISTRIBUTION_SCORERS = frozenset({"entropy", "instability"})
