"""Plain-Python float64 reference formulas (SPEC §1, §4) the vectorised code is checked against.

Rows are lists of logits; ``-inf`` entries are masked vocabulary (probability 0).
"""

from __future__ import annotations

import math

NEG_INF = float("-inf")


def bf_lse(row: list[float], beta: float = 1.0) -> float:
    vals = [beta * x for x in row if x != NEG_INF]
    m = max(vals)
    return m + math.log(sum(math.exp(v - m) for v in vals))


def bf_probs(row: list[float]) -> list[float]:
    lse = bf_lse(row)
    return [0.0 if x == NEG_INF else math.exp(x - lse) for x in row]


def bf_entropy(row: list[float]) -> float:
    return -sum(p * math.log(p) for p in bf_probs(row) if p > 0)


def bf_jsd(a: list[float], b: list[float]) -> float:
    p, q = bf_probs(a), bf_probs(b)
    total = 0.0
    for pv, qv in zip(p, q):
        m = 0.5 * (pv + qv)
        if pv > 0:
            total += 0.5 * pv * math.log(pv / m)
        if qv > 0:
            total += 0.5 * qv * math.log(qv / m)
    return total
