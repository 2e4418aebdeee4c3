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


def log_partition(logits: torch.Tensor, betas: tuple[float, ...]) -> torch.Tensor:
    """``logsumexp_v(β · z[..., v])`` for each β: ``[len(betas), ...]``."""
    z = _upcast(logits)
    return torch.stack([torch.logsumexp(beta * z, dim=-1) for beta in betas])


def gather_token_logit(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """``z[..., token_ids[...]]``: the raw logit of a given token, shape ``logits.shape[:-1]``."""
    return _upcast(logits).gather(-1, token_ids.to(logits.device).long().unsqueeze(-1)).squeeze(-1)


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(_upcast(logits), dim=-1)


def _plogp(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``Σ_v p_v · log q_v`` with the convention ``0 · log 0 = 0`` (masked entries)."""
    p = log_p.exp()
    return torch.where(p > 0, p * log_q, torch.zeros_like(p)).sum(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of ``softmax(z)``: ``-Σ_v p_v log p_v``."""
    log_p = _log_probs(logits)
    return -_plogp(log_p, log_p)


def js_divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats, in ``[0, ln 2]``) between ``softmax(a)`` and ``softmax(b)``."""
    log_p, log_q = _log_probs(logits_a), _log_probs(logits_b)
    log_m = torch.logaddexp(log_p, log_q) - torch.log(torch.tensor(2.0, dtype=log_p.dtype))
    kl_pm = _plogp(log_p, log_p) - _plogp(log_p, log_m)
    kl_qm = _plogp(log_q, log_q) - _plogp(log_q, log_m)
    return (0.5 * (kl_pm + kl_qm)).clamp_min(0.0)


def nonfinite_rows(logits: torch.Tensor) -> torch.Tensor:
    """True where a row has a NaN or ``+inf`` logit, or no finite logit at all."""
    bad_entry = torch.isnan(logits) | torch.isposinf(logits)
    all_masked = torch.isneginf(logits).all(-1)
    return bad_entry.any(-1) | all_masked
