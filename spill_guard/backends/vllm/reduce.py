"""Per-step reductions for the vLLM capture: the core's formulas, laid out as ring columns.

Columns of one captured step (float32): ``logsumexp(β z_t)`` for each captured β, then a
non-finite flag, then entropy and the JSD to the same request's previous step (NaN unless
the request asked for ``stats="full"``), then ``max_v z_t`` (a greedy step's chosen logit).
The maths is :mod:`spill_guard.capture.step_stats`, the same functions the transformers
backend calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spill_guard.capture.step_stats import (
    StepDistribution,
    js_from_distributions,
    log_partition_and_max,
    summarize,
    validate_betas,
)


@dataclass(frozen=True)
class Columns:
    """Where each statistic sits in a ring row."""

    betas: tuple[float, ...]

    @property
    def nonfinite(self) -> int:
        return len(self.betas)

    @property
    def entropy(self) -> int:
        return len(self.betas) + 1

    @property
    def jsd_prev(self) -> int:
        return len(self.betas) + 2

    @property
    def row_max(self) -> int:
        return len(self.betas) + 3

    @property
    def width(self) -> int:
        return len(self.betas) + 4

    @classmethod
    def for_betas(cls, betas: tuple[float, ...] | list[float]) -> Columns:
        return cls(validate_betas(tuple(betas)))


@dataclass(frozen=True)
class Previous:
    """A request's distribution at its previous step, kept on the device for the JSD."""

    step: int
    probs: torch.Tensor  # [V]
    entropy: torch.Tensor  # []


@torch.no_grad()
def reduce_step(
    z: torch.Tensor,
    columns: Columns,
    full_rows: list[int],
    previous: list[Previous | None],
    *,
    scratch: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[Previous]]:
    """Reduce raw logits ``z`` ``[R, V]`` to ring rows ``[R, columns.width]``.

    ``full_rows`` are the row indices that want entropy/JSD; ``previous[j]`` is the previous
    distribution of ``full_rows[j]`` (None at a request's first step). Returns the values and,
    for each full row, its distribution to keep as the next step's ``previous``. ``scratch``: an
    optional float32 buffer shaped like ``z``, reused for the log-softmax pass.
    """
    lp, top = log_partition_and_max(z, columns.betas, scratch=scratch)  # [nβ, R], [R]
    lse = lp[columns.betas.index(1.0)]
    nan = torch.full_like(lse, float("nan"))
    # one stack in column order instead of a NaN fill plus a write per column
    values = torch.stack([*lp, (~torch.isfinite(lse)).float(), nan, nan, top], dim=1).float()
    kept: list[Previous] = []
    if full_rows:
        index = torch.tensor(full_rows, dtype=torch.long, device=z.device)
        current = summarize(z.index_select(0, index), columns.betas)
        values[index, columns.entropy] = current.entropy.float()
        paired = [j for j, p in enumerate(previous) if p is not None]
        prior = [p for p in previous if p is not None]  # previous[j] for each j in paired
        if paired:
            before = StepDistribution(
                log_partition=current.log_partition[:, paired],  # unused by the JSD
                probs=torch.stack([p.probs for p in prior]),
                entropy=torch.stack([p.entropy for p in prior]),
                nonfinite=current.nonfinite[paired],
            )
            now = StepDistribution(
                current.log_partition[:, paired],
                current.probs[paired],
                current.entropy[paired],
                current.nonfinite[paired],
            )
            jsd = js_from_distributions(before, now)
            values[index[paired], columns.jsd_prev] = jsd.float()
        kept = [Previous(-1, current.probs[j], current.entropy[j]) for j in range(len(full_rows))]
    return values, kept
