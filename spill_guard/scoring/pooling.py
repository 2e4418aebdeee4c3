"""Pool per-token risk values over a token range into one score (higher = riskier).

min, max, mean and sum are all monotone, so pooling never flips the score direction.
Before pooling, the steps the range depends on (``z_t..z_{t+1}`` for each token) are
checked: NaN/+inf logits raise :class:`NonFiniteLogitsError` naming the positions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import (
    FinalStepNotComputedError,
    InvalidInputError,
    InvalidParameterError,
    NonFiniteLogitsError,
)

POOLINGS: dict[str, Callable[[np.ndarray], float]] = {
    "min": lambda v: float(np.min(v)),
    "max": lambda v: float(np.max(v)),
    "mean": lambda v: float(np.mean(v)),
    "sum": lambda v: float(np.sum(v)),
}


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise InvalidParameterError(f"unknown pooling {pooling!r}; choose one of {sorted(POOLINGS)}.")
    return pooling


def resolve_range(trace: TokenTrace, start: int | None, end: int | None) -> tuple[int, int]:
    """Validate a token range ``[start, end)`` (defaults: the whole answer)."""
    n = len(trace)
    s = 0 if start is None else start
    e = n if end is None else end
    if not (0 <= s < e <= n):
        raise InvalidInputError(
            f"token range [{start}, {end}) is empty or outside the answer's {n} tokens; pass 0 <= start < end <= {n}."
        )
    return s, e


def check_finite(trace: TokenTrace, start: int, end: int) -> None:
    """Raise if any logit row the tokens ``[start, end)`` depend on is NaN/+inf/fully masked."""
    bad = np.nonzero(trace.nonfinite[start : end + 1])[0]
    if len(bad):
        steps = [int(start + i) for i in bad]
        raise NonFiniteLogitsError(
            f"the model produced NaN/+inf (or fully masked) logits at answer steps {steps} "
            "(0-based; step T is the extra step after the last token). This usually means an "
            "fp16 overflow or a broken checkpoint: try dtype='float32' or 'bfloat16'.",
            positions=steps,
        )


def check_final_step(trace: TokenTrace, end: int, values: np.ndarray, spec: str) -> None:
    """Raise if ``values`` (the range ``[.., end)``) lack the last token's value because ``z_{T+1}`` was skipped.

    Pooling skips NaN, so without this check a mean over the whole answer would silently
    leave the last token out.
    """
    if not trace.final_step and end == len(trace) and values.size and np.isnan(values[-1]):
        raise FinalStepNotComputedError(
            f"{spec} over tokens [.., {end}) needs z_(T+1), the logits after the answer's last token "
            f"({int(trace.token_ids[-1])}, a stop token without text), and that step was skipped "
            "(final_step='auto'). End the range before the stop token, or generate with final_step='always'."
        )


def pool(values: np.ndarray, pooling: str) -> float:
    """Pool ``values`` ignoring NaN entries (quantities undefined by construction)."""
    check_pooling(pooling)
    kept = values[~np.isnan(values)]
    if kept.size == 0:
        raise InvalidInputError(
            "no token in the range has a defined value for this scorer (e.g. the reference "
            "variant is undefined on the first answer token); widen the range."
        )
    return POOLINGS[pooling](kept)
