"""One colour scale for per-token risk values, shared by the terminal and HTML views.

Blue = low, light grey = middle, red = high (a diverging scale: the middle of the range is
visibly neutral, so "riskier than the rest of this answer" stands out on either end).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

RGB = tuple[int, int, int]

_LOW: RGB = (59, 76, 192)
_MID: RGB = (221, 221, 221)
_HIGH: RGB = (180, 4, 38)


def finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def value_range(
    values: Sequence[float | None], vmin: float | None = None, vmax: float | None = None
) -> tuple[float, float]:
    """``(lo, hi)``: the given bounds, else the finite values' own min / max (``(0, 0)`` if none)."""
    present = finite(values)
    lo = vmin if vmin is not None else (min(present) if present else 0.0)
    hi = vmax if vmax is not None else (max(present) if present else 0.0)
    return float(lo), float(hi)


def position(value: float, lo: float, hi: float) -> float:
    """Where ``value`` sits in ``[lo, hi]`` as 0..1 (clipped; 0.5 when the range is empty)."""
    if hi <= lo:
        return 0.5
    return min(1.0, max(0.0, (value - lo) / (hi - lo)))


def risk_rgb(value: float, lo: float, hi: float) -> RGB:
    t = position(value, lo, hi)
    a, b, u = (_LOW, _MID, t * 2) if t < 0.5 else (_MID, _HIGH, (t - 0.5) * 2)
    return tuple(round(x + (y - x) * u) for x, y in zip(a, b))  # type: ignore[return-value]


def readable_text_rgb(background: RGB) -> RGB:
    """Black or white, whichever contrasts more with ``background`` (relative luminance)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def hex_color(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)
