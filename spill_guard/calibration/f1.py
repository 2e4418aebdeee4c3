"""Threshold strategy ``f1``: the cut that maximises F1 of flagging incorrect answers.

Flagging is ``risk > threshold``. Candidates are ``-inf`` (flag everything) and every
distinct risk in the data (flag what lies strictly above it), which covers every distinct
decision a threshold can make on this data, so the result is the exact optimum. Ties in F1
go to the highest threshold (the fewest flags for the same F1).

No guarantee on false flags: use ``false_flag`` or ``conformal`` for that. When most
answers are wrong, the F1 optimum is often "flag (almost) everything"; that is what F1
rewards, not a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class F1Strategy:
    name: str = "f1"
    target: float | None = None  # F1 has no target

    def threshold(self, risk_correct: np.ndarray, risk_incorrect: np.ndarray) -> float:
        risks = np.concatenate([risk_correct, risk_incorrect])
        is_bad = np.concatenate([np.zeros(len(risk_correct), bool), np.ones(len(risk_incorrect), bool)])
        order = np.argsort(-risks, kind="stable")
        r_desc, bad_desc = risks[order], is_bad[order]
        # Cut after the last member of each run of equal risks: flag the prefix (risk > next value).
        ends = np.r_[np.flatnonzero(np.diff(r_desc) != 0), len(r_desc) - 1]
        tp = np.cumsum(bad_desc)[ends].astype(float)
        flagged = (ends + 1).astype(float)
        f1 = 2 * tp / (flagged + len(risk_incorrect))
        # Threshold for "flag the first ends[i]+1": the next lower distinct value, or -inf for all.
        cuts = np.r_[r_desc[ends[:-1] + 1], -np.inf]
        # Also "flag nothing" (threshold = the maximum), F1 = 0.
        f1 = np.r_[0.0, f1]
        cuts = np.r_[r_desc[0], cuts]
        best = np.flatnonzero(f1 == f1.max())
        return float(cuts[best].max())
