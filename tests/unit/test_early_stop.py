"""EarlyStop on hand-made token steps: running pooled Δ, min_tokens, stop tokens, limits."""

from __future__ import annotations

import pytest
import torch

from spill_guard.capture.streaming import TokenStep
from spill_guard.errors import InvalidParameterError
from spill_guard.guard import EarlyStop

EOS = 9


def step(index, tokens, deltas):
    """A TokenStep whose Δ (β = 1) equals ``deltas``: chosen logit 0, next log-partition = Δ."""
    b = len(tokens)
    return TokenStep(index, torch.tensor(tokens), torch.zeros(b), torch.zeros(1, b),
                     torch.tensor([deltas], dtype=torch.float32), (1.0,))


def test_energies_follow_spec_definitions():
    s = TokenStep(0, torch.tensor([1]), torch.tensor([2.0]), torch.tensor([[3.0], [5.0]]),
                  torch.tensor([[4.0], [7.0]]), (1.0, 0.5))
    e, f, d = s.energies(0.5)
    assert (float(e), float(f), float(d)) == (-1.0, -5.0, 6.0)  # E=-βz, F=-logZ_t(β), Δ=logZ_{t+1}(β)-βz


def test_stops_only_after_min_tokens_and_above_threshold():
    session = EarlyStop(1.0, pooling="mean", min_tokens=2).session(2, [EOS])
    session.on_step(step(0, [1, 1], [5.0, 0.0]))
    assert session([1, 1], 2) == [False, False]  # one token scored: below min_tokens
    session.on_step(step(1, [1, 1], [0.5, 0.0]))
    assert session([1, 1], 3) == [True, False]  # mean 2.75 > 1; row 1 mean 0
    assert session.limits() == [3, None]  # two scored tokens + the one just chosen
    assert session.cut([3, 5]) == [True, False] and session.cut([2, 5]) == [False, False]
    session.on_step(step(2, [1, 1], [9.0, 9.0]))  # row 0 is stopped: ignored from now on
    assert session.values[0] == [5.0, 0.5]


def test_rows_that_ended_on_a_stop_token_are_never_cut():
    session = EarlyStop(0.0, pooling="max", min_tokens=1).session(1, [EOS])
    session.on_step(step(0, [EOS], [5.0]))
    assert session([None], 2) == [False]  # an ended row (no token) is not asked again
    assert session.limits() == [None]


def test_non_finite_deltas_are_ignored_in_the_running_score():
    session = EarlyStop(1.0, pooling="sum", min_tokens=1).session(1, [EOS])
    session.on_step(step(0, [1], [float("inf")]))
    assert session.running_score(0) is None
    session.on_step(step(1, [1], [2.0]))
    assert session.running_score(0) == 2.0


@pytest.mark.parametrize("kwargs, match", [
    ({"abort_threshold": float("nan")}, "number"),
    ({"abort_threshold": 1.0, "pooling": "min"}, "mean, max or sum"),
    ({"abort_threshold": 1.0, "min_tokens": 0}, "min_tokens"),
])
def test_bad_configuration(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        EarlyStop(**kwargs)


@pytest.mark.parametrize("beta", [0, -1.0, float("nan"), float("inf"), "1", None, True])
def test_early_stop_beta_out_of_range_was_not_validated(beta):
    """Issue 11: a β <= 0 (or not a finite number) only failed mid-generation with a raw ValueError."""
    with pytest.raises(InvalidParameterError, match="beta"):
        EarlyStop(1.0, beta=beta)


@pytest.mark.parametrize("kwargs", [{"abort_threshold": True}, {"abort_threshold": "1"},
                                    {"min_tokens": True}, {"pooling": ["mean"]}])
def test_early_stop_wrong_types_are_refused(kwargs):
    with pytest.raises(InvalidParameterError):
        EarlyStop(**{"abort_threshold": 1.0, **kwargs})
