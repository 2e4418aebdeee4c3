"""Brute-force checks of the per-step reductions in ``spill_guard.capture.step_stats``.

Every expected value is computed with plain Python floats (``math.exp`` / ``math.log`` over
lists), on the *same* values the library sees: low-precision inputs are rounded to their
dtype first and then upcast to float64, so the only difference left is the library's
float32 arithmetic, which the tolerances are sized for.
"""

from __future__ import annotations

import math

import pytest
import torch

from spill_guard import InvalidParameterError, SpillGuardError
from spill_guard.capture.step_stats import (
    entropy,
    gather_token_logit,
    js_divergence,
    log_partition,
    nonfinite_rows,
    validate_betas,
)

NEG_INF = float("-inf")
LN2 = math.log(2.0)

# Tolerances for results computed in float32 from values of magnitude <= ~10.
F32_ATOL = 2e-5
F32_RTOL = 2e-6


# ----------------------------------------------------------------------------- brute force
from bruteforce import bf_entropy, bf_jsd, bf_lse, bf_probs  # noqa: E402  (shared reference formulas)


def as_lists(t: torch.Tensor) -> list:
    """The values the library sees (already rounded to t.dtype), as float64 Python floats."""
    return t.to(torch.float64).tolist()


def close(actual: float, expected: float, atol: float = F32_ATOL, rtol: float = F32_RTOL) -> bool:
    return abs(actual - expected) <= atol + rtol * abs(expected)


# ----------------------------------------------------------------------------- inputs
HAND_ROWS = [
    [0.0, 1.0, 2.0, 3.0, -1.0],
    [5.0, 5.0, 5.0, 5.0, 5.0],  # uniform: entropy ln 5
    [-2.5, 0.25, 7.0, -0.75, 1.5],
    [10.0, -10.0, 0.5, 3.25, -4.0],
]


def random_logits(shape: tuple[int, ...], seed: int, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64) * scale


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


# ----------------------------------------------------------------------------- log_partition
@pytest.mark.parametrize("dtype", DTYPES)
def test_log_partition_matches_brute_force(dtype):
    logits = torch.tensor(HAND_ROWS, dtype=torch.float64).to(dtype)
    betas = (1.0, 0.5, 2.0)
    out = log_partition(logits, betas)
    assert out.shape == (3, len(HAND_ROWS))
    rows = as_lists(logits)
    for i, beta in enumerate(betas):
        for r, row in enumerate(rows):
            assert close(float(out[i, r]), bf_lse(row, beta)), (dtype, beta, r)


def test_log_partition_beta_scales_inside_the_exponent():
    # logsumexp(β z) != β logsumexp(z): guards against applying β outside.
    row = [0.0, 1.0, 2.0]
    out = log_partition(torch.tensor([row]), (0.5,))
    assert close(float(out[0, 0]), bf_lse(row, 0.5))
    assert not close(float(out[0, 0]), 0.5 * bf_lse(row, 1.0), atol=1e-3)


def test_log_partition_is_stable_for_large_logits():
    row = [1000.0, 999.0, 998.0, -1000.0]
    out = log_partition(torch.tensor([row], dtype=torch.float32), (1.0, 3.0))
    assert torch.isfinite(out).all()
    assert close(float(out[0, 0]), bf_lse(row, 1.0), atol=1e-3, rtol=1e-6)
    assert close(float(out[1, 0]), bf_lse(row, 3.0), atol=1e-3, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_reduced_in_float32(dtype):
    # A large vocabulary: summing in fp16/bf16 would lose ~3 digits; float32 keeps them.
    logits = random_logits((2, 4096), seed=7, scale=4.0).to(dtype)
    rows = as_lists(logits)
    lp = log_partition(logits, (1.0,))
    ent = entropy(logits)
    assert lp.dtype == torch.float32 and ent.dtype == torch.float32
    for r, row in enumerate(rows):
        assert close(float(lp[0, r]), bf_lse(row), atol=5e-5), r
        assert close(float(ent[r]), bf_entropy(row), atol=5e-5), r


def test_float64_stays_float64_and_is_exact():
    logits = random_logits((3, 11), seed=1)
    rows = as_lists(logits)
    lp = log_partition(logits, (1.0, 0.5))
    ent = entropy(logits)
    jsd = js_divergence(logits, logits.flip(0))
    assert lp.dtype == ent.dtype == jsd.dtype == torch.float64
    for r, row in enumerate(rows):
        assert abs(float(lp[0, r]) - bf_lse(row)) < 1e-12
        assert abs(float(lp[1, r]) - bf_lse(row, 0.5)) < 1e-12
        assert abs(float(ent[r]) - bf_entropy(row)) < 1e-12
        assert abs(float(jsd[r]) - bf_jsd(row, rows[2 - r])) < 1e-12


# ----------------------------------------------------------------------------- gather_token_logit
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("id_dtype", [torch.int64, torch.int32])
def test_gather_token_logit_picks_the_token_entry(dtype, id_dtype):
    logits = random_logits((2, 3, 9), seed=3).to(dtype)
    ids = torch.tensor([[0, 8, 4], [7, 7, 1]], dtype=id_dtype)
    out = gather_token_logit(logits, ids)
    assert out.shape == (2, 3)
    vals = as_lists(logits)
    for b in range(2):
        for t in range(3):
            # Gathering is exact: the upcast of the rounded value, nothing else.
            assert float(out[b, t]) == vals[b][t][int(ids[b, t])]


def test_gather_token_logit_masked_token_is_minus_inf():
    logits = torch.tensor([[0.0, NEG_INF, 1.0]])
    assert float(gather_token_logit(logits, torch.tensor([1]))[0]) == NEG_INF


# ----------------------------------------------------------------------------- entropy
@pytest.mark.parametrize("dtype", DTYPES)
def test_entropy_matches_brute_force(dtype):
    logits = torch.tensor(HAND_ROWS, dtype=torch.float64).to(dtype)
    out = entropy(logits)
    assert out.shape == (len(HAND_ROWS),)
    for r, row in enumerate(as_lists(logits)):
        assert close(float(out[r]), bf_entropy(row)), (dtype, r)


def test_entropy_of_uniform_is_log_v():
    out = entropy(torch.zeros(3, 50))
    assert torch.allclose(out.double(), torch.full((3,), math.log(50), dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_entropy_with_masked_vocabulary_is_finite(dtype):
    rows = [
        [0.0, NEG_INF, 1.0, NEG_INF, 2.0],
        [NEG_INF, NEG_INF, 3.0, NEG_INF, NEG_INF],  # a single allowed token: entropy 0
        [1.0, 1.0, NEG_INF, NEG_INF, NEG_INF],  # two equal tokens: ln 2
    ]
    logits = torch.tensor(rows, dtype=torch.float64).to(dtype)
    out = entropy(logits)
    assert torch.isfinite(out).all(), out
    expected = [bf_entropy(r) for r in as_lists(logits)]
    assert expected[1] == 0.0 and close(expected[2], LN2, atol=1e-12)
    for r in range(3):
        assert close(float(out[r]), expected[r]), r


# ----------------------------------------------------------------------------- JSD
@pytest.mark.parametrize("dtype", DTYPES)
def test_jsd_matches_brute_force(dtype):
    a = random_logits((4, 13), seed=11).to(dtype)
    b = random_logits((4, 13), seed=12).to(dtype)
    out = js_divergence(a, b)
    assert out.shape == (4,)
    la, lb = as_lists(a), as_lists(b)
    for r in range(4):
        assert close(float(out[r]), bf_jsd(la[r], lb[r]), atol=5e-6), r


def test_jsd_with_masked_entries_is_finite_and_correct():
    a = [[0.0, NEG_INF, 1.0, 2.0, NEG_INF], [NEG_INF, 0.5, 0.5, NEG_INF, 0.0]]
    b = [[NEG_INF, 3.0, 1.0, 0.0, NEG_INF], [2.0, NEG_INF, 0.5, NEG_INF, 1.0]]
    out = js_divergence(torch.tensor(a), torch.tensor(b))
    assert torch.isfinite(out).all(), out
    for r in range(2):
        assert close(float(out[r]), bf_jsd(a[r], b[r]), atol=5e-6), r


def test_jsd_disjoint_supports_reach_ln2():
    a = torch.tensor([[0.0, 0.0, NEG_INF, NEG_INF]])
    b = torch.tensor([[NEG_INF, NEG_INF, 4.0, -1.0]])
    out = float(js_divergence(a, b)[0])
    assert abs(out - LN2) < 1e-6


def test_jsd_zero_for_identical_and_shifted_distributions():
    a = random_logits((5, 17), seed=21).float()
    assert float(js_divergence(a, a).abs().max()) < 1e-6
    # softmax is shift-invariant: z and z + c are the same distribution.
    assert float(js_divergence(a, a + 7.5).abs().max()) < 1e-6


def test_jsd_is_symmetric_and_bounded():
    a = random_logits((64, 23), seed=31, scale=5.0).float()
    b = random_logits((64, 23), seed=32, scale=5.0).float()
    ab, ba = js_divergence(a, b), js_divergence(b, a)
    assert torch.allclose(ab, ba, atol=1e-6)
    assert float(ab.min()) >= 0.0
    assert float(ab.max()) <= LN2 + 1e-6
    # Not degenerate: the pairs really differ.
    assert float(ab.max()) > 0.1


# ----------------------------------------------------------------------------- leading axes
def test_leading_batch_axes_b_t_v():
    logits = random_logits((2, 3, 7), seed=41).float()
    logits[1, 2, 3] = NEG_INF
    other = random_logits((2, 3, 7), seed=42).float()
    betas = (1.0, 2.0)
    lp, ent, jsd = log_partition(logits, betas), entropy(logits), js_divergence(logits, other)
    assert lp.shape == (2, 2, 3) and ent.shape == (2, 3) and jsd.shape == (2, 3)
    la, lo = as_lists(logits), as_lists(other)
    for b in range(2):
        for t in range(3):
            for i, beta in enumerate(betas):
                assert close(float(lp[i, b, t]), bf_lse(la[b][t], beta)), (b, t, beta)
            assert close(float(ent[b, t]), bf_entropy(la[b][t])), (b, t)
            assert close(float(jsd[b, t]), bf_jsd(la[b][t], lo[b][t]), atol=5e-6), (b, t)


def test_single_row_without_leading_axes():
    row = [0.5, -1.0, 2.0]
    z = torch.tensor(row)
    assert log_partition(z, (1.0,)).shape == (1,)
    assert entropy(z).shape == ()
    assert close(float(entropy(z)), bf_entropy(row))
    assert nonfinite_rows(z).shape == ()


# ----------------------------------------------------------------------------- nonfinite_rows
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_nonfinite_rows_flags_nan_posinf_and_fully_masked(dtype):
    nan, inf = float("nan"), float("inf")
    rows = [
        [0.0, 1.0, 2.0],  # fine
        [0.0, NEG_INF, 2.0],  # masked entry: fine
        [0.0, nan, 2.0],  # NaN
        [inf, 1.0, 2.0],  # +inf
        [NEG_INF, NEG_INF, NEG_INF],  # nothing left
        [nan, NEG_INF, NEG_INF],
    ]
    out = nonfinite_rows(torch.tensor(rows).to(dtype))
    assert out.dtype == torch.bool
    assert out.tolist() == [False, False, True, True, True, True]


def test_nonfinite_rows_with_leading_axes():
    z = torch.zeros(2, 3, 4)
    z[0, 1, 2] = float("nan")
    z[1, 2] = NEG_INF
    out = nonfinite_rows(z)
    assert out.shape == (2, 3)
    assert out.tolist() == [[False, True, False], [False, False, True]]


# ----------------------------------------------------------------------------- no mutation
@pytest.mark.parametrize("dtype", DTYPES)
def test_inputs_are_not_mutated(dtype):
    a = random_logits((2, 3, 8), seed=51).to(dtype)
    a[0, 0, 1] = NEG_INF
    a[1, 2, 5] = float("nan")
    b = random_logits((2, 3, 8), seed=52).to(dtype)
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    a0, b0, ids0 = a.clone(), b.clone(), ids.clone()
    log_partition(a, (1.0, 0.5, 2.0))
    gather_token_logit(a, ids)
    entropy(a)
    js_divergence(a, b)
    nonfinite_rows(a)
    torch.testing.assert_close(a, a0, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(b, b0, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(ids, ids0)
    assert a.dtype == dtype


# ----------------------------------------------------------------------------- validate_betas
@pytest.mark.parametrize(
    "given, expected",
    [
        ((1.0,), (1.0,)),
        ((), (1.0,)),
        ((0.5,), (1.0, 0.5)),
        ((0.5, 2.0), (1.0, 0.5, 2.0)),
        ((2.0, 1.0, 0.5), (2.0, 1.0, 0.5)),  # 1.0 present: order kept
        ((0.5, 0.5, 1, 1.0), (0.5, 1.0)),  # duplicates (incl. int 1 == 1.0) dropped
        ([3], (1.0, 3.0)),
    ],
)
def test_validate_betas(given, expected):
    out = validate_betas(given)
    assert out == expected
    assert isinstance(out, tuple) and all(type(b) is float for b in out)


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan"), float("inf"), float("-inf"), "1.0", None])
def test_validate_betas_rejects(bad):
    with pytest.raises(InvalidParameterError) as info:
        validate_betas((1.0, bad))
    assert isinstance(info.value, SpillGuardError) and isinstance(info.value, ValueError)
    assert repr(bad) in str(info.value)
