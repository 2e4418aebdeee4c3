"""Left padding, the layout both generation and the teacher-forced pass use."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def left_pad(
    sequences: Sequence[Sequence[int]], pad_token_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, position_ids)``, each ``[B, max_len]``, rows right-aligned.

    Positions count real tokens only (as ``generate`` computes them), so a padded row gets
    the same positions, and the same logits, as the row alone.
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for b, seq in enumerate(sequences):
        if len(seq):
            ids[b, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[b, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids.to(device), mask.to(device), positions.to(device)
