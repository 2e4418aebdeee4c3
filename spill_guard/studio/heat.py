"""A heatmap scale a reviewer can read as risk: each token against correct answers' tokens of its kind.

Raw per-token Δ is not risk: content tokens ("Paris", "Canberra") always carry a high Δ, so an
answer coloured on its own range paints the right answer's key word deep red. Here a token's
colour is its *percentile* among the Δ of tokens of the same kind (word / number / other) in
answers reviewers labelled **correct** (until there are enough, answers the guard passed): a
token is red only when correct answers rarely have such a Δ for that kind of token.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

KINDS = ("word", "number", "other")
#: Fewer reference tokens of a kind than this and the kind falls back to every kind pooled.
MIN_REFERENCE = 30
#: Percentile bands (upper bounds, %) and their CSS classes, lowest first; the legend lists them.
BANDS: tuple[tuple[float, str, str], ...] = (
    (50.0, "q0", "below the reference's median"),
    (75.0, "q1", "50th-75th percentile"),
    (90.0, "q2", "75th-90th percentile"),
    (97.5, "q3", "90th-97.5th percentile"),
    (math.inf, "q4", "above the 97.5th percentile: rare in the reference"),
)


def token_kind(text: str) -> str:
    if any(c.isdigit() for c in text):
        return "number"
    if any(c.isalpha() for c in text):
        return "word"
    return "other"


@dataclass(frozen=True)
class TokenCell:
    text: str
    value: float | None
    percentile: float | None  # 0..100 among the reference tokens of its kind
    band: str  # CSS class: q0..q4, or "na" (no Δ or no reference)
    in_span: bool
    kind: str  # word / number / other


class Reference:
    """Sorted Δ values of reference tokens per kind; ``source`` says where they came from (for the legend)."""

    def __init__(self, values: dict[str, list[float]], answers: int, source: str) -> None:
        self.values = {k: sorted(v) for k, v in values.items()}
        self.pooled = sorted(x for v in values.values() for x in v)
        self.answers = answers
        self.source = source

    @classmethod
    def from_answers(cls, answers: Iterable[tuple[Sequence[str], Sequence[float | None]]], source: str) -> Reference:
        values: dict[str, list[float]] = {k: [] for k in KINDS}
        n = 0
        for tokens, scores in answers:
            n += 1
            for text, value in zip(tokens, scores):
                if value is not None and math.isfinite(value):
                    values[token_kind(text)].append(float(value))
        return cls(values, n, source)

    def __bool__(self) -> bool:
        return bool(self.pooled)

    def percentile(self, text: str, value: float) -> float | None:
        ref = self.values.get(token_kind(text), [])
        if len(ref) < MIN_REFERENCE:
            ref = self.pooled
        if not ref:
            return None
        below = bisect.bisect_left(ref, value)
        equal = bisect.bisect_right(ref, value) - below
        return 100.0 * (below + 0.5 * equal) / len(ref)


def band(percentile: float | None) -> str:
    if percentile is None:
        return "na"
    for upper, css, _ in BANDS:
        if percentile < upper:
            return css
    return BANDS[-1][1]


def cells(
    tokens: Sequence[str], scores: Sequence[float | None], span: dict | None, reference: Reference
) -> list[TokenCell]:
    """One cell per answer token: its Δ, its percentile among the reference, its band, whether it is in the span."""
    start = (span or {}).get("token_start")
    end = (span or {}).get("token_end")
    out = []
    for i, (text, value) in enumerate(zip(tokens, scores)):
        finite = value is not None and math.isfinite(value)
        pct = reference.percentile(text, float(value)) if finite and value is not None else None
        in_span = isinstance(start, int) and isinstance(end, int) and start <= i < end
        out.append(
            TokenCell(
                text, float(value) if finite and value is not None else None, pct, band(pct), in_span, token_kind(text)
            )
        )
    return out
