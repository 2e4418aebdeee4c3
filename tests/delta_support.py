"""Comparing per-token Δ lists when the guard skipped the last token's z_(T+1) step.

The guard, the server and the drop-ins generate with ``final_step="auto"``: after a stop token
without text (``<|im_end|>``) the extra forward step is not run and that token's Δ is NaN
(``null`` in JSON). The core's ``generate``/teacher forcing compute it. Every other Δ must match.
"""

from __future__ import annotations

import math
from typing import Sequence

import pytest


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def assert_same_deltas(got: Sequence[float | None], expected: Sequence[float], *, last_is_textless_stop: bool,
                       abs: float = 1e-5) -> None:
    """``got`` equals ``expected`` within ``abs``; only a final textless stop token may lack its Δ."""
    assert len(got) == len(expected)
    assert not any(_missing(v) for v in got[:-1]), f"a Δ other than the last is missing: {list(got)}"
    assert list(got[:-1]) == pytest.approx(list(expected[:-1]), abs=abs)
    if _missing(got[-1]):
        assert last_is_textless_stop, "the last Δ is missing but the answer did not end on a textless stop token"
    else:
        assert got[-1] == pytest.approx(expected[-1], abs=abs)
