"""A second opinion only where one pass is unsure: the cascade's rule and its fit (issue "second opinion").

One pass gives every answer a risk (higher = riskier). A :class:`Cascade` names a band
``[low, high]`` of that risk where the one-pass score is unsure; only answers in the band are
sampled again, and there the final risk blends the one-pass risk with the samples'
*inconsistency* (``1 - agreement`` with the first answer)::

    t        = (risk - low) / (high - low)                  # where the answer sits in the band, 0..1
    final    = low + (high - low) * ((1 - weight) * t + weight * (1 - agreement))

``final`` stays inside the band, so every answer below the band still ranks below every sampled
one and every answer above it still ranks above: the cascade only re-orders the unsure middle.
``weight = 0`` gives the one-pass risk back; ``weight = 1`` orders the band by inconsistency
alone. ``final`` is non-decreasing in the risk and in the inconsistency. A calibrated threshold is
then fitted on ``final`` as on any risk.

:func:`fit_cascade` chooses the band and the weight on labelled data where every answer was
sampled (a dev split): the pair with the highest AUROC of ``final`` among those that sample at most
``budget`` of the answers (ties: the one that samples fewer). Choose on one split, report on another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from spill_guard.errors import InvalidParameterError
from spill_guard.evaluation.metrics import auroc

#: Weights of the inconsistency :func:`fit_cascade` tries.
WEIGHTS = (0.25, 0.5, 0.75, 1.0)
#: Quantile steps of the one-pass risk the band's ends are chosen from.
BAND_STEPS = 20
#: The AUROC a cascade must gain over one pass on the data it is chosen on (noise gains less).
MIN_GAIN = 0.01


@dataclass(frozen=True)
class Cascade:
    """The band ``[low, high]`` of one-pass risk that gets a second opinion, and the inconsistency's weight."""

    low: float
    high: float
    weight: float

    def __post_init__(self) -> None:
        for name in ("low", "high", "weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidParameterError(f"Cascade {name} must be a finite number, got {value!r}.")
        if self.low > self.high:
            raise InvalidParameterError(
                f"Cascade band low {self.low} is above high {self.high}; give the band as (low, high)."
            )
        if not 0.0 <= self.weight <= 1.0:
            raise InvalidParameterError(
                f"Cascade weight must lie in [0, 1] (0: one pass only, 1: inconsistency only), got {self.weight}."
            )

    def unsure(self, risk: float | None) -> bool:
        """Whether an answer with this one-pass risk is sampled (a missing or non-finite risk is not)."""
        return risk is not None and math.isfinite(risk) and self.low <= risk <= self.high

    def combine(self, risk: float, agreement: float) -> float:
        """The final risk of an answer in the band whose samples agree with it at ``agreement`` (0..1)."""
        if not self.unsure(risk):
            raise InvalidParameterError(
                f"risk {risk!r} is outside the band [{self.low}, {self.high}]: only answers in it get a second opinion."
            )
        if not 0.0 <= agreement <= 1.0:
            raise InvalidParameterError(f"agreement must lie in [0, 1], got {agreement!r}.")
        width = self.high - self.low
        if width == 0.0:
            return self.low
        t = (risk - self.low) / width
        return self.low + width * ((1.0 - self.weight) * t + self.weight * (1.0 - agreement))

    def scores(self, risk: ArrayLike, agreement: ArrayLike) -> np.ndarray:
        """Final risks of many answers: the one-pass risk outside the band, :meth:`combine` inside it.

        ``agreement`` is read only inside the band (it may be NaN elsewhere: those were not sampled).
        """
        r = np.asarray(risk, dtype=float)
        a = np.asarray(agreement, dtype=float)
        if r.shape != a.shape:
            raise InvalidParameterError(f"{r.shape[0]} risks but {a.shape[0]} agreements; give one per answer.")
        inside = self.sampled(r)
        if np.any(~np.isfinite(a[inside])) or np.any((a[inside] < 0) | (a[inside] > 1)):
            raise InvalidParameterError("every answer in the band needs an agreement in [0, 1] (it was sampled).")
        out = r.copy()
        width = self.high - self.low
        if width > 0:
            t = (r[inside] - self.low) / width
            out[inside] = self.low + width * ((1.0 - self.weight) * t + self.weight * (1.0 - a[inside]))
        return out

    def sampled(self, risk: ArrayLike) -> np.ndarray:
        """Which answers the band samples (a boolean mask)."""
        r = np.asarray(risk, dtype=float)
        return np.isfinite(r) & (r >= self.low) & (r <= self.high)


def check_budget(budget: object, name: str = "budget") -> float:
    """``budget`` (the largest share of questions a band may sample) as a float in (0, 1]; else an
    :class:`InvalidParameterError` naming ``name`` (an argument or a command-line option)."""
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float))
        or not math.isfinite(budget)
        or not 0.0 < budget <= 1.0
    ):
        raise InvalidParameterError(
            f"{name} is the largest share of questions the band may sample, in (0, 1]; got {budget!r}; e.g. 0.5."
        )
    return float(budget)


@dataclass(frozen=True)
class CascadeFit:
    """The chosen cascade with what it gave on the data it was chosen on (``cascade`` None: no band
    within the budget beat one pass, so keep one pass)."""

    cascade: Cascade | None
    auroc: float  # of the final risk
    one_pass_auroc: float
    consistency_auroc: float  # of the inconsistency alone (every answer sampled)
    sampled_share: float


def fit_cascade(
    risk: ArrayLike,
    agreement: ArrayLike,
    incorrect: ArrayLike,
    *,
    budget: float = 0.5,
    weights: Sequence[float] = WEIGHTS,
    steps: int = BAND_STEPS,
    min_gain: float = MIN_GAIN,
) -> CascadeFit:
    """Choose the band and weight with the best AUROC of the final risk, sampling at most ``budget`` of answers.

    ``risk``: one-pass risks; ``agreement``: every answer's agreement with its samples (all were
    sampled here); ``incorrect``: the labels (True = incorrect). Band ends are quantiles of the risk
    in ``1 / steps`` steps. A cascade must beat one pass by ``min_gain`` AUROC on these data, else one
    pass is kept (``cascade`` None): among ~900 candidates, a tie of a few noisy ranks alone gains ~0.001.
    """
    r = np.asarray(risk, dtype=float)
    a = np.asarray(agreement, dtype=float)
    y = np.asarray(incorrect, dtype=bool)
    if not (r.shape == a.shape == y.shape) or r.ndim != 1:
        raise InvalidParameterError(
            f"risk, agreement and labels must be 1-D and of one length, got {r.shape}, {a.shape}, {y.shape}."
        )
    budget = check_budget(budget)
    if not np.all(np.isfinite(r)) or not np.all(np.isfinite(a)) or np.any((a < 0) | (a > 1)):
        raise InvalidParameterError("every risk must be finite and every agreement in [0, 1] to fit a cascade.")
    if y.all() or not y.any():
        raise InvalidParameterError("fitting a cascade needs both correct and incorrect answers.")
    if not isinstance(steps, int) or steps < 2:
        raise InvalidParameterError(f"steps must be an integer >= 2, got {steps!r}.")
    one_pass = auroc(r, y)
    best: tuple[float, float, Cascade] | None = None
    edges = np.quantile(r, np.linspace(0.0, 1.0, steps + 1))
    for i in range(len(edges)):
        for j in range(i, len(edges)):
            low, high = float(edges[i]), float(edges[j])
            share = float(np.mean((r >= low) & (r <= high)))
            if share > budget or share == 0.0:
                continue
            for weight in weights:
                cascade = Cascade(low, high, float(weight))
                score = auroc(cascade.scores(r, a), y)
                key = (score, -share)
                if best is None or key > (best[0], best[1]):
                    best = (score, -share, cascade)
    consistency = auroc(1.0 - a, y)
    if best is None or best[0] < one_pass + min_gain:  # no band within the budget beats one pass: keep one pass
        return CascadeFit(None, one_pass, one_pass, consistency, 0.0)
    score, negative_share, chosen = best
    return CascadeFit(chosen, score, one_pass, consistency, -negative_share)
