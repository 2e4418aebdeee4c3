"""Listeners on a backend that does not stream steps: replayed from the finished answers.

vLLM returns whole answers (its capture values are fetched once an answer is done), so a
listener sees the same :class:`~spill_guard.capture.TokenStep` s the streaming capture sends,
one per token index, after generation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from spill_guard.capture.streaming import TokenStep
from spill_guard.report import ScoredAnswer


def replay_steps(answers: Sequence[ScoredAnswer], listeners: Sequence[Callable[[TokenStep], None]], pad: int) -> None:
    """Call ``listeners`` with one :class:`TokenStep` per token index, as the streaming capture does."""
    traces = [a.trace for a in answers]
    betas = traces[0].betas
    nan = float("nan")
    for t in range(max(len(tr) for tr in traces)):
        live = [t < len(tr) for tr in traces]
        ids = torch.tensor([int(tr.token_ids[t]) if ok else pad for tr, ok in zip(traces, live)])
        # float64, as the traces hold them: listeners must see the values the verdict pools
        chosen = torch.tensor(
            [float(tr.chosen_logit[t]) if ok else nan for tr, ok in zip(traces, live)], dtype=torch.float64
        )
        lp = torch.tensor(
            [[float(tr.log_partition[k, t]) if ok else nan for tr, ok in zip(traces, live)] for k in range(len(betas))],
            dtype=torch.float64,
        )
        nxt = torch.tensor(
            [
                [float(tr.log_partition[k, t + 1]) if ok else nan for tr, ok in zip(traces, live)]
                for k in range(len(betas))
            ],
            dtype=torch.float64,
        )
        step = TokenStep(t, ids, chosen, lp, nxt, betas)
        for listener in listeners:
            listener(step)
