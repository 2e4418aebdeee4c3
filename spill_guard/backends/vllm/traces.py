"""Assemble a :class:`~spill_guard.capture.TokenTrace` from what vLLM returned.

Inputs per answer: the generated token ids, the raw log-probability of each (vLLM with
``logprobs_mode="raw_logprobs"``, ``logprobs=0``), and the captured ring rows of steps
``0..T-1`` plus the row of step ``T`` (from the z_(T+1) follow-up, or from the answer's own
request when vLLM ran one step past the end). ``z_t[x_t] = log p_t(x_t) + logsumexp(z_t)``;
for a greedy request without penalties (no logprobs asked) ``z_t[x_t] = max_v z_t``, a
captured column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from spill_guard.backends.vllm.reduce import Columns
from spill_guard.capture.trace import TokenTrace, traces_from_steps
from spill_guard.errors import CaptureError


def sampled_logprobs(token_ids: Sequence[int], logprobs: Any) -> list[float]:
    """The raw log-probability of each generated token from vLLM's per-step logprob dicts."""
    if logprobs is None or len(logprobs) < len(token_ids):
        raise CaptureError(
            f"vLLM returned {0 if logprobs is None else len(logprobs)} logprob entries for {len(token_ids)} tokens; "
            "captured requests must be sent with logprobs>=0."
        )
    out = []
    for t, (token, entry) in enumerate(zip(token_ids, logprobs)):
        item = entry.get(token) if entry else None
        if item is None:
            raise CaptureError(f"vLLM returned no logprob for generated token {token} at step {t}.")
        out.append(float(getattr(item, "logprob", item)))
    return out


def build_trace(
    token_ids: Sequence[int],
    logprobs: Sequence[float] | None,
    rows: Sequence[Sequence[float]],
    columns: Columns,
    vocab_size: int,
    *,
    full: bool,
    final_step: bool = True,
) -> TokenTrace:
    """One answer's trace; ``rows`` are ring rows of steps ``0..T`` (``T + 1`` of them).

    ``final_step=False``: z_(T+1) was not asked for (``rows`` holds ``T``); the last token's
    next-step values are NaN, flagged as not computed rather than non-finite.
    ``logprobs=None``: the chosen logits are the captured row maxima (greedy, no penalties).
    """
    n = len(token_ids)
    if n == 0:
        raise CaptureError("vLLM generated no tokens; use max_new_tokens >= 1.")
    needed = n + 1 if final_step else n
    if len(rows) < needed:
        raise CaptureError(f"captured {len(rows)} steps for {n} tokens; {needed} are needed (z_1..z_(T+1)).")
    values = torch.tensor([list(r) for r in rows[:needed]], dtype=torch.float64)  # [T + 1, width]
    if not final_step:
        missing = torch.full((1, columns.width), float("nan"), dtype=torch.float64)
        missing[0, columns.nonfinite] = 0.0
        values = torch.cat([values, missing])
    nb = len(columns.betas)
    lse = values[:, :nb].T  # [nβ, T + 1]
    if logprobs is None:
        chosen = values[:n, columns.row_max]
    else:
        chosen = torch.tensor(logprobs, dtype=torch.float64) + lse[columns.betas.index(1.0), :n]
    nan = torch.full((1, n), float("nan"), dtype=torch.float64)
    entropy = values[:n, columns.entropy].unsqueeze(0) if full else nan
    # The ring stores JSD(p_(t-1), p_t) at step t; the trace wants JSD(p_t, p_(t+1)) at t.
    jsd = values[1 : n + 1, columns.jsd_prev].unsqueeze(0) if full else nan
    [trace] = traces_from_steps(
        token_ids=torch.tensor([list(token_ids)], dtype=torch.long),
        lengths=[n],
        betas=columns.betas,
        chosen_logit=chosen.unsqueeze(0),
        # z_(t-1)[x_t] would need the whole previous logit row kept per request; the vLLM capture
        # does not keep it, so the reference variant Δ' is undefined (NaN) on this backend.
        previous_logit=nan,
        log_partition=lse.unsqueeze(1),
        entropy=entropy,
        jsd_next=jsd,
        nonfinite=values[:, columns.nonfinite].bool().unsqueeze(0),
        vocab_size=vocab_size,
        distribution_stats=full,
        final_step=[final_step],
    )
    return trace
