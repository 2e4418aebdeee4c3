"""Teacher-forced re-score: one forward pass over ``prompt + answer``.

For answers produced elsewhere (another model, a cache, a human). The forward output at
absolute position ``i`` predicts token ``i + 1``, so answer token ``x_t`` at position ``j``
was chosen from ``logits[j - 1]`` (= ``z_t``) and ``z_{t+1}`` is ``logits[j]``. The window
``logits[P - 1 : P + T]`` therefore holds ``z_1..z_{T+1}`` exactly, with no extra step.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from spill_guard.capture.padding import left_pad
from spill_guard.capture.step_stats import (
    StepDistribution,
    gather_token_logit,
    js_from_distributions,
    summarize,
    validate_betas,
)
from spill_guard.capture.trace import TokenTrace, traces_from_steps
from spill_guard.errors import InvalidInputError


def window_statistics(window: torch.Tensor, answer_ids: torch.Tensor, betas: tuple[float, ...]) -> dict:
    """Step statistics from a logit window ``[B, T + 1, V]`` (``window[:, i] = z_{i+1}``).

    ``answer_ids`` is ``[B, T]``. Returns the keyword arguments of
    :func:`~spill_guard.capture.trace.traces_from_steps` except ids, lengths and vocab size.
    """
    n = answer_ids.shape[1]
    steps = summarize(window, betas)  # z_1..z_(T+1) at once, the same reductions as streaming
    after = StepDistribution(
        steps.log_partition[..., 1:], steps.probs[:, 1:], steps.entropy[:, 1:], steps.nonfinite[:, 1:]
    )
    chosen_from = StepDistribution(
        steps.log_partition[..., :n], steps.probs[:, :n], steps.entropy[:, :n], steps.nonfinite[:, :n]
    )
    previous = gather_token_logit(window[:, : max(n - 1, 0)], answer_ids[:, 1:])
    nan_col = torch.full((answer_ids.shape[0], 1), float("nan"), dtype=previous.dtype, device=previous.device)
    return {
        "betas": betas,
        "chosen_logit": gather_token_logit(window[:, :n], answer_ids),
        "previous_logit": torch.cat([nan_col, previous], dim=1)[:, :n],
        "log_partition": steps.log_partition,
        "entropy": chosen_from.entropy,
        "jsd_next": js_from_distributions(chosen_from, after),
        "nonfinite": steps.nonfinite,
    }


def _supports_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def teacher_forced_traces(
    model: Any,
    prompt_ids: list[list[int]],
    answer_ids: list[list[int]],
    *,
    pad_token_id: int,
    betas: tuple[float, ...] = (1.0,),
) -> list[TokenTrace]:
    """Traces for each ``(prompt, answer)`` pair, batched in one left-padded forward pass."""
    betas = validate_betas(betas)
    if len(prompt_ids) != len(answer_ids):
        raise InvalidInputError(
            f"got {len(prompt_ids)} prompts but {len(answer_ids)} answers; pass one answer per prompt."
        )
    for i, (p, a) in enumerate(zip(prompt_ids, answer_ids)):
        if not p or not a:
            raise InvalidInputError(
                f"pair {i}: prompt has {len(p)} tokens and answer {len(a)}; both need at least one token."
            )
    device = next(model.parameters()).device
    ids, mask, positions = left_pad([list(p) + list(a) for p, a in zip(prompt_ids, answer_ids)], pad_token_id, device)
    t_max = max(map(len, answer_ids))
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "use_cache": False}
    if _supports_logits_to_keep(model):
        kwargs["logits_to_keep"] = t_max + 1  # only the LM-head rows we use
    logits = model(**kwargs).logits[:, -(t_max + 1) :]

    traces: list[TokenTrace] = []
    for b, answer in enumerate(answer_ids):
        n = len(answer)
        window = logits[b : b + 1, -(n + 1) :]
        stats = window_statistics(window, torch.tensor([answer], device=device), betas)
        traces += traces_from_steps(
            token_ids=torch.tensor([answer]), lengths=[n], vocab_size=int(window.shape[-1]), **stats
        )
    return traces
