"""Scorers, pooling and ScoreSpec against brute-force formulas on hand-built logits.

Traces are built exactly as the teacher-forced path builds them (``window_statistics`` +
``traces_from_steps``) from a float64 window ``[1, T + 1, V]`` with ``window[0, i] = z_{i+1}``,
so the expected values can be computed with plain Python floats at 1e-12 tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spill_guard import (
    InvalidInputError,
    InvalidParameterError,
    NonFiniteLogitsError,
    SpillGuardError,
)
from spill_guard.capture.step_stats import validate_betas
from spill_guard.capture.teacher_forced import window_statistics
from spill_guard.capture.trace import TokenTrace, traces_from_steps
from spill_guard.scoring import (
    BASELINES,
    POOLINGS,
    DynamicInstability,
    MarginalEnergy,
    ReferenceSpilledEnergy,
    ScoreSpec,
    SpilledEnergy,
    TokenEnergy,
    TokenEntropy,
    TokenImprobability,
    TokenNLL,
    make_scorer,
    pool,
)

NEG_INF = float("-inf")
TOL = 1e-12
BETAS = validate_betas((1.0, 0.5, 2.0))


# ----------------------------------------------------------------------------- brute force
from bruteforce import bf_entropy, bf_jsd, bf_lse, bf_probs  # noqa: E402  (shared reference formulas)


# ----------------------------------------------------------------------------- fixtures
# z_1..z_6 over a vocabulary of 7, with masked entries (never on a chosen token).
WINDOW = [
    [1.0, 2.0, -0.5, 0.0, 3.0, NEG_INF, -2.0],
    [0.3, -1.2, 4.0, 2.2, NEG_INF, 0.0, 1.1],
    [-3.0, 0.0, 0.5, 5.5, 1.0, 1.5, NEG_INF],
    [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
    [0.0, NEG_INF, NEG_INF, 6.0, -1.0, 0.25, 0.75],
    [1.5, -0.5, 3.5, NEG_INF, 0.0, 2.5, -1.5],
]
# Deliberately not always the argmax.
ANSWER = [4, 3, 1, 0, 4]
T = len(ANSWER)
V = len(WINDOW[0])


def make_trace(window=WINDOW, answer=ANSWER, betas=BETAS) -> TokenTrace:
    w = torch.tensor([window], dtype=torch.float64)
    ids = torch.tensor([answer])
    stats = window_statistics(w, ids, betas)
    [trace] = traces_from_steps(token_ids=ids, lengths=[len(answer)], vocab_size=len(window[0]), **stats)
    return trace


@pytest.fixture
def trace():
    return make_trace()


def expected_values(name: str, beta: float = 1.0, window=WINDOW, answer=ANSWER, jsd_weight=0.5) -> list[float]:
    z, x, n = window, answer, len(answer)
    if name == "spilled_energy":
        return [bf_lse(z[t + 1], beta) - beta * z[t][x[t]] for t in range(n)]
    if name == "token_energy":
        return [-beta * z[t][x[t]] for t in range(n)]
    if name == "marginal_energy":
        return [-bf_lse(z[t], beta) for t in range(n)]
    if name == "spilled_energy_reference":
        return [math.nan] + [bf_lse(z[t], beta) - beta * z[t - 1][x[t]] for t in range(1, n)]
    if name == "nll":
        return [-math.log(bf_probs(z[t])[x[t]]) for t in range(n)]
    if name == "improbability":
        return [1.0 - bf_probs(z[t])[x[t]] for t in range(n)]
    if name == "entropy":
        return [bf_entropy(z[t]) for t in range(n)]
    if name == "instability":
        v = len(z[0])
        return [
            jsd_weight * bf_jsd(z[t], z[t + 1]) / math.log(2) + (1 - jsd_weight) * bf_entropy(z[t]) / math.log(v)
            for t in range(n)
        ]
    raise AssertionError(name)


def assert_values(actual: np.ndarray, expected: list[float], tol: float = TOL) -> None:
    assert actual.shape == (len(expected),)
    assert actual.dtype == np.float64
    np.testing.assert_allclose(actual, np.array(expected), rtol=0, atol=tol, equal_nan=True)


# ----------------------------------------------------------------------------- the trace itself
def test_trace_fields_match_brute_force(trace):
    assert len(trace) == T and trace.vocab_size == V and trace.betas == BETAS
    assert trace.token_ids.tolist() == ANSWER
    assert_values(trace.chosen_logit, [WINDOW[t][ANSWER[t]] for t in range(T)])
    assert_values(trace.previous_logit, [math.nan] + [WINDOW[t - 1][ANSWER[t]] for t in range(1, T)])
    assert trace.log_partition.shape == (len(BETAS), T + 1)
    for i, beta in enumerate(BETAS):
        assert_values(trace.log_partition[i], [bf_lse(WINDOW[t], beta) for t in range(T + 1)])
    assert_values(trace.entropy, [bf_entropy(WINDOW[t]) for t in range(T)])
    assert_values(trace.jsd_next, [bf_jsd(WINDOW[t], WINDOW[t + 1]) for t in range(T)])
    assert trace.nonfinite.tolist() == [False] * (T + 1)
    assert_values(trace.log_prob, [math.log(bf_probs(WINDOW[t])[ANSWER[t]]) for t in range(T)])


def test_log_partition_at_unknown_beta_raises(trace):
    with pytest.raises(InvalidParameterError, match="0.25"):
        trace.log_partition_at(0.25)


def test_batched_traces_are_cut_per_row():
    # Row 1 has 3 tokens in a batch padded to 5: its trace must equal the row built alone.
    other = [[0.5 * v if v != NEG_INF else v for v in row[::-1]] for row in WINDOW]
    w = torch.tensor([WINDOW, other], dtype=torch.float64)
    ids = torch.tensor([ANSWER, [2, 5, 6, 0, 0]])
    stats = window_statistics(w, ids, BETAS)
    full, short = traces_from_steps(token_ids=ids, lengths=[5, 3], vocab_size=V, **stats)
    alone = make_trace(other[:4], [2, 5, 6])
    assert len(full) == 5 and len(short) == 3
    for field in ("token_ids", "chosen_logit", "previous_logit", "log_partition", "entropy", "jsd_next", "nonfinite"):
        np.testing.assert_array_equal(getattr(short, field), getattr(alone, field), err_msg=field)
    np.testing.assert_array_equal(full.chosen_logit, make_trace().chosen_logit)


# ----------------------------------------------------------------------------- every scorer
SCORERS = [
    (SpilledEnergy, "spilled_energy"),
    (TokenEnergy, "token_energy"),
    (MarginalEnergy, "marginal_energy"),
    (ReferenceSpilledEnergy, "spilled_energy_reference"),
    (TokenNLL, "nll"),
    (TokenImprobability, "improbability"),
    (TokenEntropy, "entropy"),
    (DynamicInstability, "instability"),
]
BETA_SCORERS = SCORERS[:4]


@pytest.mark.parametrize("cls, name", SCORERS)
def test_scorer_matches_brute_force(trace, cls, name):
    scorer = cls()
    assert scorer.name == name
    assert_values(scorer(trace), expected_values(name))


@pytest.mark.parametrize("cls, name", BETA_SCORERS)
@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_energy_scorers_at_other_betas(trace, cls, name, beta):
    assert_values(cls(beta=beta)(trace), expected_values(name, beta))
    # β really matters: the β = 1 values differ.
    assert not np.allclose(cls(beta=beta)(trace), cls()(trace), equal_nan=True)


@pytest.mark.parametrize("cls, name", BETA_SCORERS)
def test_energy_scorer_beta_not_captured_raises(trace, cls, name):
    if name == "token_energy":  # E_t needs no log-partition: any β works
        assert_values(cls(beta=3.0)(trace), expected_values(name, 3.0))
        return
    with pytest.raises(InvalidParameterError, match="3.0"):
        cls(beta=3.0)(trace)


@pytest.mark.parametrize("cls", [c for c, _ in BETA_SCORERS])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_energy_scorer_rejects_bad_beta(cls, bad):
    with pytest.raises(InvalidParameterError) as info:
        cls(beta=bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_instability_weight(trace, weight):
    assert_values(DynamicInstability(jsd_weight=weight)(trace), expected_values("instability", jsd_weight=weight))


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_instability_rejects_bad_weight(bad):
    with pytest.raises(InvalidParameterError, match=repr(bad)):
        DynamicInstability(jsd_weight=bad)


def test_instability_in_unit_interval(trace):
    v = DynamicInstability()(trace)
    assert (v >= 0).all() and (v <= 1).all()


def test_spilled_energy_identity(trace):
    """SPEC §1: Δ_t = -log p_t(x_t) + (lse(z_{t+1}) - lse(z_t)) at β = 1."""
    delta = SpilledEnergy()(trace)
    nll = [-math.log(bf_probs(WINDOW[t])[ANSWER[t]]) for t in range(T)]
    lse_change = [bf_lse(WINDOW[t + 1]) - bf_lse(WINDOW[t]) for t in range(T)]
    assert_values(delta, [a + b for a, b in zip(nll, lse_change)])
    # ... and Δ = E_t - F_{t+1} from the two ablation scorers' parts.
    e = TokenEnergy()(trace)
    f_next = [-bf_lse(WINDOW[t + 1]) for t in range(T)]
    assert_values(delta, [e[t] - f_next[t] for t in range(T)])


def test_reference_variant_is_the_off_by_one_pairing(trace):
    """Δ'_t pairs lse(z_t) with z_{t-1}[x_t]; it is not Δ shifted by one token."""
    ref = ReferenceSpilledEnergy()(trace)
    delta = SpilledEnergy()(trace)
    assert math.isnan(ref[0])
    assert not np.allclose(ref[1:], delta[:-1])
    assert not np.allclose(ref[1:], delta[1:])


def test_single_token_answer():
    tr = make_trace(WINDOW[:2], [3])
    assert len(tr) == 1
    for cls, name in SCORERS:
        assert_values(cls()(tr), expected_values(name, window=WINDOW[:2], answer=[3]))


# ----------------------------------------------------------------------------- pooling
@pytest.mark.parametrize(
    "pooling, fn",
    [("min", min), ("max", max), ("mean", lambda v: sum(v) / len(v)), ("sum", sum)],
)
def test_pooling_brute_force(pooling, fn):
    values = np.array([0.5, -2.0, 3.25, 1.0])
    assert pool(values, pooling) == pytest.approx(fn([0.5, -2.0, 3.25, 1.0]), abs=1e-15)
    # NaN entries (undefined by construction) are skipped.
    with_nan = np.array([math.nan, 0.5, -2.0, 3.25, 1.0])
    assert pool(with_nan, pooling) == pytest.approx(fn([0.5, -2.0, 3.25, 1.0]), abs=1e-15)


def test_pool_all_nan_raises():
    with pytest.raises(InvalidInputError):
        pool(np.array([math.nan, math.nan]), "min")


def test_pool_unknown_pooling_echoes_name():
    with pytest.raises(InvalidParameterError, match="median"):
        pool(np.array([1.0]), "median")


@pytest.mark.parametrize("scorer", [n for _, n in SCORERS])
@pytest.mark.parametrize("pooling", sorted(POOLINGS))
@pytest.mark.parametrize("span", [(None, None), (1, 4), (2, 3), (0, 5)])
def test_spec_score_equals_brute_force_pooling(trace, scorer, pooling, span):
    s, e = span
    vals = expected_values(scorer)[(s or 0) : (T if e is None else e)]
    vals = [v for v in vals if not math.isnan(v)]
    fn = {"min": min, "max": max, "mean": lambda v: sum(v) / len(v), "sum": sum}[pooling]
    assert ScoreSpec(scorer, pooling).score(trace, s, e) == pytest.approx(fn(vals), abs=1e-12)


def test_reference_variant_on_first_token_only_raises(trace):
    with pytest.raises(InvalidInputError):
        ScoreSpec("spilled_energy_reference", "min").score(trace, 0, 1)


# ----------------------------------------------------------------------------- ScoreSpec.parse
@pytest.mark.parametrize(
    "text, scorer, pooling, beta",
    [
        ("spilled_energy:min", "spilled_energy", "min", 1.0),
        ("spilled_energy:min@0.5", "spilled_energy", "min", 0.5),
        ("token_energy:mean@2", "token_energy", "mean", 2.0),
        ("marginal_energy:sum", "marginal_energy", "sum", 1.0),
        ("spilled_energy_reference:max@0.25", "spilled_energy_reference", "max", 0.25),
        ("nll:sum", "nll", "sum", 1.0),
        ("entropy:max", "entropy", "max", 1.0),
        ("g_nll", "nll", "sum", 1.0),
        ("min_token_prob", "improbability", "max", 1.0),
        ("mean_nll", "nll", "mean", 1.0),
        ("mean_entropy", "entropy", "mean", 1.0),
        ("max_entropy", "entropy", "max", 1.0),
        ("dynamic_instability", "instability", "max", 1.0),
    ],
)
def test_parse(text, scorer, pooling, beta):
    spec = ScoreSpec.parse(text)
    assert (spec.scorer, spec.pooling, spec.beta) == (scorer, pooling, beta)


def test_every_baseline_parses():
    for name, (scorer, pooling) in BASELINES.items():
        assert ScoreSpec.parse(name) == ScoreSpec(scorer, pooling)


def test_beta_suffix_is_used_when_scoring(trace):
    spec = ScoreSpec.parse("spilled_energy:max@0.5")
    assert spec.score(trace) == pytest.approx(max(expected_values("spilled_energy", 0.5)), abs=1e-12)
    assert spec.name == "spilled_energy:max@0.5"


def test_baseline_semantics(trace):
    probs = [bf_probs(WINDOW[t])[ANSWER[t]] for t in range(T)]
    assert ScoreSpec.parse("min_token_prob").score(trace) == pytest.approx(1 - min(probs), abs=1e-12)
    assert ScoreSpec.parse("g_nll").score(trace) == pytest.approx(-sum(math.log(p) for p in probs), abs=1e-12)
    assert ScoreSpec.parse("mean_nll").score(trace) == pytest.approx(-sum(math.log(p) for p in probs) / T, abs=1e-12)


@pytest.mark.parametrize(
    "text, echoed",
    [
        ("no_such_scorer:min", "no_such_scorer"),
        ("spilled_energy:median", "median"),
        ("spilled_energy", "spilled_energy"),  # no pooling
        ("spilled_energy:min@0", "0"),
        ("spilled_energy:min@-1.5", "-1.5"),
        ("spilled_energy:min@nan", "nan"),
        ("spilled_energy:min@inf", "inf"),
        ("token_energy:max@abc", "abc"),
        ("marginal_energy:mean@0.0", "0.0"),
    ],
)
def test_parse_errors(text, echoed):
    with pytest.raises(InvalidParameterError) as info:
        ScoreSpec.parse(text)
    assert isinstance(info.value, SpillGuardError)
    assert echoed in str(info.value)


@pytest.mark.parametrize("text", ["nll:sum@0", "entropy:max@-1", "improbability:max@nan"])
def test_parse_rejects_bad_beta_for_every_scorer(text):
    """An invalid β must not be accepted silently just because the scorer ignores β."""
    with pytest.raises(InvalidParameterError):
        ScoreSpec.parse(text)


def test_make_scorer_unknown_name():
    with pytest.raises(InvalidParameterError, match="bogus"):
        make_scorer("bogus")


# ----------------------------------------------------------------------------- ranges and NaN steps
@pytest.mark.parametrize("span", [(0, 0), (3, 2), (-1, 2), (0, 6), (5, None), (3, 42)])
def test_bad_token_range_raises(trace, span):
    s, e = span
    with pytest.raises(InvalidInputError) as info:
        ScoreSpec("spilled_energy", "min").score(trace, s, e)
    assert isinstance(info.value, SpillGuardError)
    assert f"[{s}, {e})" in str(info.value)


def _window_with_bad_step(index: int, kind: str):
    w = [list(r) for r in WINDOW]
    if kind == "nan":
        w[index][2] = math.nan
    elif kind == "posinf":
        w[index][6] = math.inf
    else:  # fully masked
        w[index] = [NEG_INF] * V
    return w


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("kind", ["nan", "posinf", "masked"])
def test_nonfinite_step_raises_only_for_ranges_touching_it(kind):
    # Step index 3 is z_4: chosen-from row of token 3 and the z_{t+1} of token 2.
    tr = make_trace(_window_with_bad_step(3, kind))
    assert tr.nonfinite.tolist() == [False, False, False, True, False, False]
    for scorer in ("spilled_energy", "nll", "entropy", "marginal_energy"):
        spec = ScoreSpec(scorer, "max")
        for s, e in [(0, 3), (2, 3), (3, 4), (3, 5), (0, 5), (None, None)]:
            with pytest.raises(NonFiniteLogitsError) as info:
                spec.score(tr, s, e)
            assert info.value.positions == [3]
            assert "[3]" in str(info.value)
            assert isinstance(info.value, SpillGuardError)
        # Tokens 0..1 depend on z_1..z_3 only; token 4 on z_5, z_6.
        assert math.isfinite(spec.score(tr, 0, 2))
        assert math.isfinite(spec.score(tr, 4, 5))


def test_nonfinite_positions_lists_every_bad_step():
    w = _window_with_bad_step(1, "nan")
    w[5][0] = math.nan  # z_6 = z_{T+1}: the extra step after the last token
    tr = make_trace(w)
    with pytest.raises(NonFiniteLogitsError) as info:
        ScoreSpec("spilled_energy", "min").score(tr)
    assert info.value.positions == [1, 5]
    with pytest.raises(NonFiniteLogitsError) as info:
        ScoreSpec("nll", "sum").score(tr, 4, 5)
    assert info.value.positions == [5]
