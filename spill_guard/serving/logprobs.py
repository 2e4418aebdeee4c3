"""Log-probabilities in OpenAI's two formats, from the model's *raw* logits.

``logprob`` of a token is ``z_t[x_t] − logsumexp(z_t)`` on the raw logits (β = 1), the same
numbers the guard's ``nll`` scorer uses. They are not the probabilities the sampler used
when ``temperature``/``top_p`` reshape the distribution (OpenAI reports the processed ones).
The chosen tokens' values come from the capture of the generating pass; ``top_logprobs``
need the whole distribution, so they come from one extra teacher-forced forward pass.
"""

from __future__ import annotations

from typing import Any

import torch

from spill_guard.serving.schemas import ChatLogprobs, CompletionLogprobs, TokenLogprob, TopLogprob


def visible_tokens(scored: Any, shown_chars: int) -> list[int]:
    """Indices of the answer tokens in the returned text (not special, starting before the cut)."""
    return [i for i, t in enumerate(scored.tokens) if not t.special and t.start < shown_chars]


@torch.no_grad()
def top_logprobs(model: Any, prompt_ids: list[int], answer_ids: list[int], k: int) -> list[list[tuple[str, float]]]:
    """The ``k`` most likely tokens and raw log-probabilities at each answer position."""
    loaded = model.loaded
    ids = torch.tensor([list(prompt_ids) + list(answer_ids)], device=loaded.device)
    logits = loaded.model(input_ids=ids, use_cache=False).logits[0, len(prompt_ids) - 1 : -1].float()
    values, indices = torch.log_softmax(logits, dim=-1).topk(k, dim=-1)
    tok = model.tokenizer
    return [[(tok.decode([int(j)]), float(v)) for v, j in zip(vs, js)] for vs, js in zip(values, indices)]


def _token_text(scored: Any, i: int) -> str:
    return scored.tokens[i].text


def chat_logprobs(model: Any, scored: Any, shown_chars: int, k: int) -> ChatLogprobs:
    keep = visible_tokens(scored, shown_chars)
    logp = scored.trace.log_prob
    tops = top_logprobs(model, scored.prompt_ids, scored.answer_ids, k) if k else None
    content = []
    for i in keep:
        text = _token_text(scored, i)
        alternatives = [TopLogprob(token=t, logprob=v, bytes=list(t.encode())) for t, v in tops[i]] if tops else []
        content.append(
            TokenLogprob(token=text, logprob=float(logp[i]), bytes=list(text.encode()), top_logprobs=alternatives)
        )
    return ChatLogprobs(content=content)


def completion_logprobs(model: Any, scored: Any, shown_chars: int, k: int) -> CompletionLogprobs:
    keep = visible_tokens(scored, shown_chars)
    logp = scored.trace.log_prob
    tops = top_logprobs(model, scored.prompt_ids, scored.answer_ids, k) if k else None
    return CompletionLogprobs(
        tokens=[_token_text(scored, i) for i in keep],
        token_logprobs=[float(logp[i]) for i in keep],
        top_logprobs=[dict(tops[i]) for i in keep] if tops else None,
        text_offset=[scored.tokens[i].start for i in keep],
    )


def stream_chat_logprobs(text: str, logprob: float | None) -> dict[str, Any] | None:
    if logprob is None:
        return None
    return {
        "content": [{"token": text, "logprob": logprob, "bytes": list(text.encode()), "top_logprobs": []}],
        "refusal": None,
    }
