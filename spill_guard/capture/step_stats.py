"""Per-step reductions of raw logits: the single place where the vocabulary axis is summed.

Both the streaming capture (one decoding step at a time, ``[B, V]``) and the teacher-forced
re-score (all steps at once, ``[B, T, V]``) call these functions, so the formulas exist once.

Shapes: ``logits`` is ``[..., V]`` with any leading axes; every result drops the last axis.
Inputs are never modified; all arithmetic runs in float32 (or float64 if given float64),
whatever dtype the model produced, because fp16/bf16 sums over 50k-250k entries lose
several digits.

``-inf`` logits (masked vocabulary) are legal: they get probability 0 and contribute 0 to
entropy and divergence. NaN and ``+inf`` are not; :func:`nonfinite_rows` flags them so the
caller can report them instead of pooling garbage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from spill_guard.errors import InvalidParameterError


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    # float64 input stays float64 (brute-force tests use it); everything else goes to float32.
    return logits if logits.dtype == torch.float64 else logits.float()


def validate_betas(betas: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """Check inverse temperatures and return them as a tuple that always contains 1.0.

    β = 1 is always kept because log-probabilities and entropy are defined at β = 1.
    """
    out: list[float] = []
    for beta in betas:
        if not isinstance(beta, (int, float)) or not beta > 0 or beta != beta or beta == float("inf"):
            raise InvalidParameterError(
                f"beta must be a finite number > 0, got {beta!r}; use beta=1.0 for the model's own "
                "temperature, or e.g. 0.5 to flatten / 2.0 to sharpen the distribution."
            )
        if float(beta) not in out:
            out.append(float(beta))
    if 1.0 not in out:
        out.insert(0, 1.0)
    return tuple(out)


def _logsumexp_and_max(
    z: torch.Tensor, out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logsumexp(z), max(z), log_softmax(z))`` over the last axis, from one fused pass.

    ``log_softmax`` is ``z - logsumexp(z)`` elementwise, so at the row maximum it equals
    ``max(z) - logsumexp(z)``; hence ``logsumexp = max(z) - max(log_softmax(z))``. Both
    maxima are cheap vectorised reductions, and torch's CPU ``log_softmax`` kernel is about
    twice as fast as its ``logsumexp`` (which runs max, subtract, exp and sum as separate passes).
    The value at the maximum is ``-log Σ exp(z - max)`` with the sum in ``[1, V]``, so the
    result is as precise as ``logsumexp``'s. Rows whose maximum is not finite (+inf, NaN, or all
    -inf) take the maximum itself, which is what ``logsumexp`` returns for them; no branch
    depends on the values, so nothing waits for the device. ``out``: a buffer like ``z`` for the
    log-softmax (a fresh ``[B, V]`` buffer per step costs page faults on CPU).
    """
    top = z.amax(dim=-1)
    log_probs = torch.log_softmax(z, dim=-1, out=out) if out is not None else torch.log_softmax(z, dim=-1)
    lse = top - log_probs.amax(dim=-1)
    return torch.where(torch.isfinite(top), lse, top), top, log_probs


def log_partition_and_max(
    logits: torch.Tensor, betas: tuple[float, ...], *, scratch: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``logsumexp_v(β · z[..., v])`` for each β (``[len(betas), ...]``) and ``max_v z`` (``[...]``).

    The maximum is the chosen logit of a greedy step (the sampled token is the argmax).
    ``scratch``: an optional float32 buffer shaped like the logits, reused (see :func:`summarize`).
    """
    z = _upcast(logits)
    values, top, _ = _log_partitions(z, betas, _fits(scratch, z))
    return values, top


def _log_partitions(
    z: torch.Tensor, betas: tuple[float, ...], out: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Log-partitions of ``z`` at every β, ``max z``, and ``log_softmax(z)`` (if β = 1 is among them)."""
    top: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None
    values = []
    for beta in betas:
        if beta == 1.0:  # reads z as is: scaling by 1.0 would copy the whole [..., V] row for nothing
            lse, top, log_probs = _logsumexp_and_max(z, out)
        else:
            lse = _logsumexp_and_max(beta * z)[0]
        values.append(lse)
    return torch.stack(values), (z.amax(dim=-1) if top is None else top), log_probs


def log_partition(
    logits: torch.Tensor, betas: tuple[float, ...], *, scratch: torch.Tensor | None = None
) -> torch.Tensor:
    """``logsumexp_v(β · z[..., v])`` for each β: ``[len(betas), ...]``."""
    return log_partition_and_max(logits, betas, scratch=scratch)[0]


def gather_token_logit(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """``z[..., token_ids[...]]``: the raw logit of a given token, shape ``logits.shape[:-1]``."""
    return _upcast(logits).gather(-1, token_ids.to(logits.device).long().unsqueeze(-1)).squeeze(-1)


def _neg_xlogx_sum(p: torch.Tensor) -> torch.Tensor:
    """``-Σ_v p_v log p_v`` with ``0 · log 0 = 0`` (masked entries), one pass."""
    return -torch.special.xlogy(p, p).sum(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of ``softmax(z)``: ``-Σ_v p_v log p_v``."""
    return _neg_xlogx_sum(torch.softmax(_upcast(logits), dim=-1))


def js_divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats, in ``[0, ln 2]``) between ``softmax(a)`` and ``softmax(b)``."""
    return js_from_distributions(summarize(logits_a, (1.0,)), summarize(logits_b, (1.0,)))


@dataclass(frozen=True)
class StepDistribution:
    """One pass over a step's logits, kept so the next step can pair with it.

    Shapes: ``log_partition`` ``[len(betas), ...]``, ``probs`` ``[..., V]`` (float32),
    ``entropy`` and ``nonfinite`` ``[...]``.
    """

    log_partition: torch.Tensor
    probs: torch.Tensor
    entropy: torch.Tensor
    nonfinite: torch.Tensor


def summarize(
    logits: torch.Tensor,
    betas: tuple[float, ...],
    *,
    probs_out: torch.Tensor | None = None,
    scratch: torch.Tensor | None = None,
) -> StepDistribution:
    """Log-partitions at each β, the β = 1 distribution, its entropy and a validity flag.

    ``betas`` must contain 1.0 (see :func:`validate_betas`). The probabilities come from the
    β = 1 log-partition already computed, so the vocabulary axis is read a few times per
    step instead of once per statistic (measured: about 3x cheaper than separate calls).

    ``probs_out`` and ``scratch`` (float32 ``[..., V]`` buffers, or None) let a caller that
    reduces one step after another reuse memory: a fresh ``[B, V]`` buffer per operation
    costs page faults on CPU that are larger than the arithmetic. The returned ``probs``
    is ``probs_out`` when given.
    """
    z = _upcast(logits)
    # The log-partition pass leaves log p = log_softmax(z) behind, which p needs anyway, so
    # H = -Σ p log p is a dot product instead of a log per entry (xlogy); measured several
    # times cheaper. Computing log p per entry (not lse - Σ p z) keeps it exact when logits are
    # large. Masked -inf logits have p = 0: clamping their log p to the lowest finite value
    # makes 0 · log p = 0 instead of NaN.
    # Ops write in place where they can: a fresh [B, V] buffer per op costs page faults on CPU.
    lp, _, log_probs = _log_partitions(z, betas, _fits(scratch, z))
    lse = lp[betas.index(1.0)]
    assert log_probs is not None  # β = 1 is among the betas (index() above)
    probs = torch.exp(log_probs, out=_fits(probs_out, z))
    entropy = -torch.linalg.vecdot(probs, log_probs.clamp_min_(torch.finfo(z.dtype).min))
    # logsumexp is NaN for a NaN row, +inf for a +inf entry and -inf for a fully masked row.
    nonfinite = ~torch.isfinite(lse)
    return StepDistribution(lp, probs, entropy, nonfinite)


def js_from_distributions(
    a: StepDistribution,
    b: StepDistribution,
    *,
    scratch: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``JSD(p, q) = H((p + q) / 2) - (H(p) + H(q)) / 2``, reusing both steps' entropies.

    ``scratch``: two float32 buffers shaped like the probabilities, reused (see :func:`summarize`).
    """
    first, second = scratch if scratch is not None else (None, None)
    mixture = torch.add(a.probs, b.probs, out=_fits(first, a.probs)).mul_(0.5)
    # m log m with m = 0 (entries masked in both steps) must be 0: clamp before the log.
    # log + dot into a reused buffer measured ~2.5x cheaper than xlogy on [8, 49152].
    log_m = torch.clamp_min(mixture, torch.finfo(mixture.dtype).tiny, out=_fits(second, mixture)).log_()
    mixture_entropy = -torch.linalg.vecdot(mixture, log_m)
    return (mixture_entropy - 0.5 * (a.entropy + b.entropy)).clamp(0.0, math.log(2.0))


def _fits(buffer: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """``buffer`` if it can hold a result shaped and typed like ``like``, else None (allocate)."""
    if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype or buffer.device != like.device:
        return None
    return buffer


def nonfinite_rows(logits: torch.Tensor) -> torch.Tensor:
    """True where a row has a NaN or ``+inf`` logit, or no finite logit at all."""
    bad_entry = torch.isnan(logits) | torch.isposinf(logits)
    all_masked = torch.isneginf(logits).all(-1)
    return bad_entry.any(-1) | all_masked
