"""The contract every scorer × pooling must honour (spill_guard.scoring.specs catalogue).

* values: shape ``[T]``, float64, deterministic, never aliasing or modifying the trace;
* pooled score: a finite float on a normal trace;
* direction (higher = riskier) where it is meaningful for a single-logit change;
* names: ``ScoreSpec.name`` parses back to the same spec.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from spill_guard.capture.step_stats import validate_betas
from spill_guard.capture.teacher_forced import window_statistics
from spill_guard.capture.trace import TokenTrace, traces_from_steps
from spill_guard.scoring import POOLINGS, ScoreSpec, catalogue, make_scorer, pool
from spill_guard.scoring.specs import BASELINES, ENERGY_SCORERS, OTHER_SCORERS

ALL_SCORERS = ENERGY_SCORERS + OTHER_SCORERS
ALL_POOLINGS = sorted(POOLINGS)
BETAS = validate_betas((0.5, 2.0))
T, V = 6, 11
ARRAY_FIELDS = ("token_ids", "chosen_logit", "previous_logit", "log_partition", "entropy", "jsd_next", "nonfinite")


def logits_and_answer(seed: int = 0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    window = rng.normal(scale=2.0, size=(T + 1, V))
    window[2, 7] = -np.inf  # a masked vocabulary entry (never the chosen token below)
    answer = [int(rng.integers(V)) for _ in range(T)]
    answer[2] = 3
    return window, answer


def build(window: np.ndarray, answer: list[int], betas=BETAS) -> TokenTrace:
    ids = torch.tensor([answer])
    stats = window_statistics(torch.tensor(window[None], dtype=torch.float64), ids, betas)
    [trace] = traces_from_steps(token_ids=ids, lengths=[len(answer)], vocab_size=window.shape[1], **stats)
    return trace


@pytest.fixture
def trace() -> TokenTrace:
    return build(*logits_and_answer())


def snapshot(trace: TokenTrace) -> dict:
    return {f: copy.deepcopy(getattr(trace, f)) for f in ARRAY_FIELDS}


def assert_unchanged(trace: TokenTrace, before: dict) -> None:
    for f in ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(trace, f), before[f], err_msg=f)


def test_catalogue_is_every_scorer_times_every_pooling():
    names = {s.name for s in catalogue()}
    assert names == {f"{s}:{p}" for s in ALL_SCORERS for p in ALL_POOLINGS}
    assert len(catalogue()) == len(ALL_SCORERS) * len(ALL_POOLINGS)
    for s in ALL_SCORERS:
        assert make_scorer(s).name == s


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("scorer", ALL_SCORERS)
def test_values_shape_dtype_and_definedness(trace, scorer):
    values = make_scorer(scorer)(trace)
    assert isinstance(values, np.ndarray)
    assert values.shape == (T,) and values.dtype == np.float64
    if scorer == "spilled_energy_reference":
        # Δ'_1 needs z_0, which does not exist: NaN by construction, finite elsewhere.
        assert math.isnan(values[0]) and np.isfinite(values[1:]).all()
    else:
        assert np.isfinite(values).all()


@pytest.mark.parametrize("scorer", ENERGY_SCORERS)
@pytest.mark.parametrize("beta", BETAS)
def test_energy_values_shape_at_each_captured_beta(trace, scorer, beta):
    values = make_scorer(scorer, beta)(trace)
    assert values.shape == (T,) and values.dtype == np.float64


@pytest.mark.parametrize("scorer", ALL_SCORERS)
@pytest.mark.parametrize("pooling", ALL_POOLINGS)
def test_no_mutation_and_no_aliasing(trace, scorer, pooling):
    before = snapshot(trace)
    spec = ScoreSpec(scorer, pooling)
    values = spec.values(trace)
    spec.score(trace)
    spec.score(trace, 1, 4)
    assert_unchanged(trace, before)
    # Writing into the returned values must not reach back into the trace.
    values[:] = 12345.0
    assert_unchanged(trace, before)


@pytest.mark.parametrize("scorer", ALL_SCORERS)
@pytest.mark.parametrize("pooling", ALL_POOLINGS)
def test_deterministic(trace, scorer, pooling):
    spec = ScoreSpec(scorer, pooling)
    a, b = spec.values(trace), spec.values(trace)
    np.testing.assert_array_equal(a, b)
    # A trace rebuilt from the same logits scores identically.
    again = build(*logits_and_answer())
    np.testing.assert_array_equal(spec.values(again), a)
    assert spec.score(trace) == spec.score(trace) == spec.score(again)


@pytest.mark.parametrize("scorer", ALL_SCORERS)
@pytest.mark.parametrize("pooling", ALL_POOLINGS)
def test_pooled_value_is_a_finite_float(trace, scorer, pooling):
    score = ScoreSpec(scorer, pooling).score(trace)
    assert isinstance(score, float) and math.isfinite(score)


@pytest.mark.parametrize("scorer", ENERGY_SCORERS)
@pytest.mark.parametrize("pooling", ALL_POOLINGS)
@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_pooled_value_finite_at_other_betas(trace, scorer, pooling, beta):
    assert math.isfinite(ScoreSpec(scorer, pooling, beta).score(trace))


@pytest.mark.parametrize("pooling", ALL_POOLINGS)
def test_pooling_is_monotone(pooling):
    # Raising any per-token value never lowers the pooled score: pooling keeps the direction.
    rng = np.random.default_rng(5)
    for _ in range(20):
        v = rng.normal(size=8)
        bump = np.zeros(8)
        bump[rng.integers(8)] = abs(rng.normal()) + 0.1
        assert pool(v + bump, pooling) >= pool(v, pooling)


# ----------------------------------------------------------------------------- direction
# Lowering the logit of the emitted token x_t at one step, all else equal, makes that token
# less likely / higher in energy, so a "higher = riskier" scorer must not go down:
#   nll, improbability: -log p_t(x_t) and 1 - p_t(x_t) rise; other steps are untouched.
#   token_energy: E_t = -β z_t[x_t] rises by βδ; other steps untouched.
#   spilled_energy: Δ_t = lse(β z_{t+1}) - β z_t[x_t] rises by βδ (z_{t+1} is untouched).
#     Δ_{t-1} = lse(β z_t) - β z_{t-1}[x_{t-1}] does move (lse(β z_t) falls), so the check
#     pools over tokens t..T only, which do not depend on lse(β z_t).
#   spilled_energy_reference: Δ'_t = lse(β z_t) - β z_{t-1}[x_t] uses x_t's logit from the
#     *previous* step; lowering z_t[x_t] only lowers lse(β z_t). The analogous change for it
#     is lowering z_{t-1}[x_t], checked separately below.
# Not covered, because a single-logit change has no fixed sign for them:
#   marginal_energy: F_t = -lse(β z_t) does not depend on which token was emitted; it moves
#     the same way whichever logit is lowered, so it says nothing about the emitted token.
#   entropy: lowering the emitted token's logit raises H_t if that token was the most likely
#     (the distribution flattens) but lowers it if the token was already unlikely.
#   instability: a mix of that entropy and JSD(p_t, p_{t+1}), which can likewise move
#     either way (p_t may move towards or away from p_{t+1}).
DIRECTIONAL = ("nll", "improbability", "token_energy", "spilled_energy")
DELTA = 1.5


def _beta_cases(scorer):
    return [1.0, 0.5, 2.0] if scorer in ENERGY_SCORERS else [1.0]


DIRECTION_CASES = [(s, b, t) for s in DIRECTIONAL for b in _beta_cases(s) for t in range(T)]


@pytest.mark.parametrize("scorer, beta, step", DIRECTION_CASES)
def test_lowering_the_emitted_logit_does_not_lower_the_score(scorer, beta, step):
    window, answer = logits_and_answer()
    lowered = window.copy()
    lowered[step, answer[step]] -= DELTA
    base, low = build(window, answer), build(lowered, answer)
    f = make_scorer(scorer, beta)
    v0, v1 = f(base), f(low)
    assert v1[step] >= v0[step]
    if scorer in ("token_energy", "spilled_energy"):
        assert v1[step] - v0[step] == pytest.approx(beta * DELTA, abs=1e-12)
    elif scorer == "nll" or np.exp(base.log_prob[step]) > 1e-9:
        assert v1[step] > v0[step]  # strictly: the token really became less likely
    if scorer == "spilled_energy":
        np.testing.assert_allclose(v1[step + 1 :], v0[step + 1 :], rtol=0, atol=1e-12)
        start = step  # Δ_{t-1} legitimately moves; see the comment above
    else:
        others = [i for i in range(T) if i != step]
        np.testing.assert_allclose(v1[others], v0[others], rtol=0, atol=1e-12)
        start = 0
    for pooling in ALL_POOLINGS:
        spec = ScoreSpec(scorer, pooling, beta if scorer in ENERGY_SCORERS else 1.0)
        assert spec.score(low, start) >= spec.score(base, start) - 1e-12, pooling


@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("step", range(1, T))
def test_reference_variant_direction(beta, step):
    # Δ'_t = lse(β z_t) - β z_{t-1}[x_t]: lowering z_{t-1}[x_t] raises it by βδ.
    window, answer = logits_and_answer()
    lowered = window.copy()
    lowered[step - 1, answer[step]] -= DELTA
    f = make_scorer("spilled_energy_reference", beta)
    v0, v1 = f(build(window, answer)), f(build(lowered, answer))
    assert v1[step] - v0[step] == pytest.approx(beta * DELTA, abs=1e-12)
    np.testing.assert_allclose(v1[step + 1 :], v0[step + 1 :], rtol=0, atol=1e-12)
    for pooling in ALL_POOLINGS:
        spec = ScoreSpec("spilled_energy_reference", pooling, beta)
        assert spec.score(build(lowered, answer), step) >= spec.score(build(window, answer), step) - 1e-12


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize("spec", catalogue(), ids=lambda s: s.name)
def test_catalogue_names_round_trip(spec):
    assert ScoreSpec.parse(spec.name) == spec
    assert ScoreSpec.parse(spec.name).name == spec.name


@pytest.mark.parametrize("scorer", ENERGY_SCORERS)
@pytest.mark.parametrize("pooling", ALL_POOLINGS)
@pytest.mark.parametrize("beta", [0.5, 2.0, 0.25, 1e-3, 10.0])
def test_energy_names_with_beta_round_trip(scorer, pooling, beta):
    spec = ScoreSpec(scorer, pooling, beta)
    assert spec.name.endswith(f"@{beta:g}")
    assert ScoreSpec.parse(spec.name) == spec


@pytest.mark.parametrize("scorer", OTHER_SCORERS)
def test_beta_is_not_part_of_non_energy_names(scorer):
    # β has no meaning for these scorers: it does not appear in the name.
    assert ScoreSpec(scorer, "max", 0.5).name == f"{scorer}:max"


@pytest.mark.parametrize("beta", [1 / 3, 0.1234567, 2.0 / 7.0])
def test_names_round_trip_betas_with_many_digits(beta):
    """A name must identify its spec: parse(name) has to score like the spec it came from."""
    captured = validate_betas((beta,))
    trace = build(*logits_and_answer(), betas=captured)
    spec = ScoreSpec("spilled_energy", "min", beta)
    parsed = ScoreSpec.parse(spec.name)
    assert parsed == spec, f"{spec.name!r} parsed back to beta={parsed.beta!r}, not {beta!r}"
    assert parsed.score(trace) == spec.score(trace)


@pytest.mark.parametrize("baseline", sorted(BASELINES))
def test_baseline_names_resolve_to_catalogue_specs(baseline):
    spec = ScoreSpec.parse(baseline)
    assert spec in catalogue()
    assert ScoreSpec.parse(spec.name) == spec
