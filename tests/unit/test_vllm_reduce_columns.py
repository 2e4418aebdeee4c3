"""The vLLM capture's per-step ring row, checked on hand-built logits (no vLLM needed).

``reduce_step`` lays one step out as ``[logsumexp(β z) for each β, non-finite flag, entropy,
JSD to the previous step, max z]``; the row maximum is a greedy step's chosen logit.
"""

from __future__ import annotations

import math

import torch

from spill_guard.backends.vllm.reduce import Columns, reduce_step
from spill_guard.capture.step_stats import log_partition_and_max


def brute_lse(row: list[float], beta: float) -> float:
    finite = [beta * v for v in row if v != float("-inf")]
    top = max(finite)
    return top + math.log(sum(math.exp(v - top) for v in finite))


def test_energy_row_holds_every_beta_the_flag_and_the_row_max():
    logits = torch.tensor([[2.0, -1.0, 0.5, float("-inf")], [0.0, 0.0, 3.0, 1.0]])
    columns = Columns.for_betas((1.0, 0.5, 2.0))
    values, kept = reduce_step(logits, columns, [], [])
    assert values.shape == (2, columns.width) and values.dtype == torch.float32 and kept == []
    for r, row in enumerate(logits.tolist()):
        for k, beta in enumerate(columns.betas):
            assert abs(float(values[r, k]) - brute_lse(row, beta)) < 1e-5
        assert float(values[r, columns.nonfinite]) == 0.0
        assert math.isnan(float(values[r, columns.entropy])) and math.isnan(float(values[r, columns.jsd_prev]))
        assert float(values[r, columns.row_max]) == max(row)
    assert logits[0, 3] == float("-inf")  # input untouched


def test_nonfinite_rows_are_flagged_with_the_values_logsumexp_gives():
    inf, nan = float("inf"), float("nan")
    logits = torch.tensor([[inf, 1.0, 2.0], [nan, 1.0, 2.0], [-inf, -inf, -inf]])
    lp, top = log_partition_and_max(logits, (1.0,))
    want = torch.logsumexp(logits, dim=-1)
    assert torch.equal(torch.isnan(lp[0]), torch.isnan(want))
    assert torch.equal(lp[0][~torch.isnan(want)], want[~torch.isnan(want)])
    values, _ = reduce_step(logits, Columns.for_betas((1.0,)), [], [])
    assert values[:, Columns.for_betas((1.0,)).nonfinite].tolist() == [1.0, 1.0, 1.0]


def test_log_partition_matches_float64_logsumexp_on_a_wide_vocabulary():
    torch.manual_seed(0)
    z = torch.randn(3, 5, 49152, dtype=torch.float64) * 6
    lp, top = log_partition_and_max(z.float(), (1.0, 0.5))
    assert (lp[0].double() - torch.logsumexp(z, -1)).abs().max() < 1e-4
    assert (lp[1].double() - torch.logsumexp(0.5 * z, -1)).abs().max() < 1e-4
    assert torch.equal(top, z.float().amax(-1))
    exact, _ = log_partition_and_max(z, (1.0,))  # float64 in, float64 arithmetic
    assert (exact[0] - torch.logsumexp(z, -1)).abs().max() < 1e-12
