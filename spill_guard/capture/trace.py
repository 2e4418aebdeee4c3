"""``TokenTrace``: everything the scorers need about one answer, O(T) in size.

Index convention (SPEC §1): answer tokens ``x_1..x_T`` are stored 0-based, so array index
``i`` is step ``t = i + 1``. ``z_t`` are the raw logits that chose ``x_t``; ``z_{T+1}`` are
the logits after reading ``x_T``. Per-step arrays of length ``T + 1`` cover ``z_1..z_{T+1}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TokenTrace:
    """Per-token raw-logit statistics of one answer (all float64 numpy arrays).

    Attributes:
        token_ids: ``[T]`` the answer's token ids ``x_t``.
        betas: inverse temperatures the log-partitions were computed at (always holds 1.0).
        chosen_logit: ``[T]`` ``z_t[x_t]``.
        previous_logit: ``[T]`` ``z_{t-1}[x_t]`` (the reference code's misaligned logit);
            NaN for the first token, which has no earlier answer step.
        log_partition: ``[len(betas), T + 1]`` ``logsumexp(β z_t)`` for ``t = 1..T+1``.
        entropy: ``[T]`` entropy of ``softmax(z_t)`` (nats).
        jsd_next: ``[T]`` Jensen-Shannon divergence between ``softmax(z_t)`` and ``softmax(z_{t+1})``.
        nonfinite: ``[T + 1]`` True where ``z_t`` held NaN/+inf or was fully masked.
        vocab_size: ``V``, used to normalise entropy.
        distribution_stats: False when captured with ``stats="energy"``: ``entropy`` and
            ``jsd_next`` were not computed (NaN), so entropy-based scorers refuse the trace.
        final_step: False when ``z_{T+1}`` was skipped (``final_step="auto"``, the answer
            ended on a stop token without text; :mod:`spill_guard.capture.final_step`): the
            last entries of ``log_partition`` and ``jsd_next`` are NaN, and a score that needs
            them over a range ending on the last token raises ``FinalStepNotComputedError``.
    """

    token_ids: np.ndarray
    betas: tuple[float, ...]
    chosen_logit: np.ndarray
    previous_logit: np.ndarray
    log_partition: np.ndarray
    entropy: np.ndarray
    jsd_next: np.ndarray
    nonfinite: np.ndarray
    vocab_size: int
    distribution_stats: bool = True
    final_step: bool = True

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])

    def log_partition_at(self, beta: float) -> np.ndarray:
        """``[T + 1]`` log-partition at ``beta``; raises if it was not captured."""
        from spill_guard.errors import InvalidParameterError

        for i, b in enumerate(self.betas):
            if abs(b - beta) <= 1e-12:
                return self.log_partition[i]
        raise InvalidParameterError(
            f"beta={beta!r} was not captured (captured: {list(self.betas)}); pass "
            f"betas=({beta!r},) when creating the model wrapper / capture."
        )

    def require_distribution_stats(self, scorer: str) -> None:
        """Raise a clear error if ``scorer`` needs entropy/JSD and they were not captured."""
        if not self.distribution_stats:
            from spill_guard.errors import InvalidInputError

            raise InvalidInputError(
                f"{scorer} needs per-step entropy/JSD, but this answer was captured with stats='energy' "
                "(energies and likelihoods only, the cheaper mode); capture with stats='full' to use it."
            )

    def to_dict(self) -> dict:
        """JSON-ready form (NaN as None), e.g. for a benchmark's generation cache."""

        def clean(a: np.ndarray) -> list:
            return [None if isinstance(v, float) and v != v else v for v in a.tolist()]

        return {
            "token_ids": self.token_ids.tolist(),
            "betas": list(self.betas),
            "chosen_logit": clean(self.chosen_logit),
            "previous_logit": clean(self.previous_logit),
            "log_partition": [clean(row) for row in self.log_partition],
            "entropy": clean(self.entropy),
            "jsd_next": clean(self.jsd_next),
            "nonfinite": self.nonfinite.tolist(),
            "vocab_size": self.vocab_size,
            "distribution_stats": self.distribution_stats,
            "final_step": self.final_step,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TokenTrace:
        """Inverse of :meth:`to_dict`."""

        def arr(values: list) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        return cls(
            token_ids=np.array(data["token_ids"], dtype=np.int64),
            betas=tuple(float(b) for b in data["betas"]),
            chosen_logit=arr(data["chosen_logit"]),
            previous_logit=arr(data["previous_logit"]),
            log_partition=np.stack([arr(row) for row in data["log_partition"]]),
            entropy=arr(data["entropy"]),
            jsd_next=arr(data["jsd_next"]),
            nonfinite=np.array(data["nonfinite"], dtype=bool),
            vocab_size=int(data["vocab_size"]),
            distribution_stats=bool(data.get("distribution_stats", True)),
            final_step=bool(data.get("final_step", True)),
        )

    @property
    def log_prob(self) -> np.ndarray:
        """``[T]`` ``log p_t(x_t)`` at β = 1."""
        return self.chosen_logit - self.log_partition_at(1.0)[:-1]


def traces_from_steps(
    token_ids: torch.Tensor,
    lengths: list[int],
    betas: tuple[float, ...],
    chosen_logit: torch.Tensor,
    previous_logit: torch.Tensor,
    log_partition: torch.Tensor,
    entropy: torch.Tensor,
    jsd_next: torch.Tensor,
    nonfinite: torch.Tensor,
    vocab_size: int,
    distribution_stats: bool = True,
    final_step: Sequence[bool] | None = None,
) -> list[TokenTrace]:
    """Cut batched step tensors into one :class:`TokenTrace` per row.

    Shapes: ``token_ids``, ``chosen_logit``, ``previous_logit``, ``entropy``, ``jsd_next``
    are ``[B, T_max]``; ``log_partition`` is ``[len(betas), B, T_max + 1]``; ``nonfinite`` is
    ``[B, T_max + 1]``. Row ``b`` keeps its first ``lengths[b]`` tokens; ``final_step[b]``
    (default True) says whether its ``z_{T+1}`` was computed.
    """

    def np64(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float64).numpy()

    ids, cl, pl = token_ids.cpu().numpy(), np64(chosen_logit), np64(previous_logit)
    lp, ent, jsd = np64(log_partition), np64(entropy), np64(jsd_next)
    bad = nonfinite.cpu().numpy().astype(bool)
    out = []
    for b, n in enumerate(lengths):
        prev = pl[b, :n].copy()
        if n:
            prev[0] = np.nan  # no earlier answer step, in streaming and teacher forcing alike
        out.append(
            TokenTrace(
                token_ids=ids[b, :n].astype(np.int64),
                betas=betas,
                chosen_logit=cl[b, :n],
                previous_logit=prev,
                log_partition=lp[:, b, : n + 1],
                entropy=ent[b, :n],
                jsd_next=jsd[b, :n],
                nonfinite=bad[b, : n + 1],
                vocab_size=vocab_size,
                distribution_stats=distribution_stats,
                final_step=True if final_step is None else bool(final_step[b]),
            )
        )
    return out
