"""OpenAI-format token log-probabilities from a scored answer, for tools that read them (UQLM).

LangChain chat models over OpenAI put ``response_metadata["logprobs"] = {"content": [...]}``
with one ``{"token", "logprob", "bytes", "top_logprobs"}`` entry per generated token; UQLM's
white-box scorers read exactly that. Here ``logprob`` is ``log softmax(z_t)[x_t]`` of the raw
logits that chose the token (β = 1, from the same trace as the spilled energy), special tokens
(end of turn) are left out as OpenAI does, and ``top_logprobs`` (only when asked for) come from
one teacher-forced pass over prompt + answer.
"""

from __future__ import annotations

from typing import Any

import torch

from spill_guard import ScoredAnswer

LOGPROBS_KEY = "logprobs"


def openai_logprobs(
    scored: ScoredAnswer, tokenizer: Any, top: list[list[tuple[int, float]]] | None = None
) -> dict[str, Any]:
    """``{"content": [...]}`` for ``scored``'s non-special tokens; ``top[i]`` = (id, logprob) pairs of step i."""
    log_prob = scored.trace.log_prob
    content = []
    for i, token in enumerate(scored.tokens):
        if token.special:
            continue
        content.append(
            {
                **_token(tokenizer, token.id),
                "logprob": float(log_prob[i]),
                "top_logprobs": [{**_token(tokenizer, tid), "logprob": lp} for tid, lp in (top[i] if top else [])],
            }
        )
    return {"content": content}


@torch.no_grad()
def top_logprobs(model: Any, prompt_ids: list[int], answer_ids: list[int], k: int) -> list[list[tuple[int, float]]]:
    """The ``k`` most likely tokens and their log-probabilities at each answer step (one forward pass)."""
    if k <= 0 or not answer_ids:
        return [[] for _ in answer_ids]
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids) + list(answer_ids)], device=device)
    logits = model(input_ids=ids, use_cache=False).logits[
        0, len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(answer_ids)
    ]
    values, indices = torch.log_softmax(logits.float(), dim=-1).topk(min(k, logits.shape[-1]), dim=-1)
    return [list(zip(row_ids.tolist(), row_vals.tolist())) for row_ids, row_vals in zip(indices, values)]


def _token(tokenizer: Any, token_id: int) -> dict[str, Any]:
    text = tokenizer.decode([int(token_id)])
    return {"token": text, "bytes": list(text.encode("utf-8"))}
