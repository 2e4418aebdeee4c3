"""``pooled_catalogue`` skips what a trace cannot give without raising per spec (issue 19, item 12).

Every report builds the catalogue; under ``stats="energy"`` (the guard's capture) the entropy
and instability scorers are not captured, and after a skipped z_(T+1) the scorers that need it
are undefined over the whole answer. The output must stay exactly ``spec.score`` for each spec
that is defined, and the exceptions raised on the way are counted with a real trace function.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import InvalidInputError
from spill_guard.scoring.specs import catalogue, pooled_catalogue


def make_trace(n: int, *, distribution_stats: bool, final_step: bool, seed: int = 0) -> TokenTrace:
    rng = np.random.default_rng(seed)
    log_partition = rng.normal(3.0, 1.0, size=(1, n + 1))
    jsd = rng.uniform(0.0, 0.5, size=n)
    entropy = rng.uniform(0.0, 3.0, size=n)
    if not final_step:
        log_partition[:, -1] = math.nan
        jsd[-1] = math.nan
    if not distribution_stats:
        jsd[:] = entropy[:] = math.nan
    previous = rng.normal(size=n)
    previous[0] = math.nan
    return TokenTrace(token_ids=np.arange(n), betas=(1.0,), chosen_logit=rng.normal(2.0, 1.0, size=n),
                      previous_logit=previous, log_partition=log_partition, entropy=entropy, jsd_next=jsd,
                      nonfinite=np.zeros(n + 1, dtype=bool), vocab_size=50, distribution_stats=distribution_stats,
                      final_step=final_step)


def one_by_one(trace: TokenTrace) -> dict[str, float]:
    out = {}
    for spec in catalogue():
        try:
            out[spec.name] = spec.score(trace)
        except InvalidInputError:
            pass
    return out


def raised_during(call):
    """``call()``'s result and the distinct spill_guard input errors raised (and caught) inside it."""
    seen: list[BaseException] = []

    def tracer(frame, event, arg):
        if event == "exception" and isinstance(arg[1], InvalidInputError) and not any(e is arg[1] for e in seen):
            seen.append(arg[1])
        return tracer

    before = sys.gettrace()
    sys.settrace(tracer)
    try:
        result = call()
    finally:
        sys.settrace(before)
    return result, seen


@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize("final_step", [True, False])
@pytest.mark.parametrize("distribution_stats", [True, False])
def test_same_scores_as_each_spec_alone(n, final_step, distribution_stats):
    trace = make_trace(n, distribution_stats=distribution_stats, final_step=final_step, seed=n)
    assert pooled_catalogue(trace) == one_by_one(trace)


def test_energy_capture_skips_entropy_scorers_without_raising():
    trace = make_trace(6, distribution_stats=False, final_step=True)
    pooled, raised = raised_during(lambda: pooled_catalogue(trace))
    assert raised == []  # was one InvalidInputError per entropy / instability spec (8)
    assert not any(name.startswith(("entropy:", "instability:")) for name in pooled)
    assert pooled == one_by_one(trace)


def test_an_undefined_scorer_raises_once_not_once_per_pooling():
    trace = make_trace(6, distribution_stats=False, final_step=False)  # the guard's stop-ended answer
    pooled, raised = raised_during(lambda: pooled_catalogue(trace))
    # spilled_energy and partition_shift need z_(T+1): one refusal each (was four each, plus eight above)
    assert len(raised) == 2
    assert "spilled_energy:mean" not in pooled and "token_energy:mean" in pooled
    assert pooled == one_by_one(trace)
