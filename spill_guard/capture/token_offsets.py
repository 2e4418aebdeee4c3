"""Character offsets of generated tokens inside the decoded answer.

Offsets come from decoding growing prefixes of the *generated ids*, never from
re-tokenising the text (which can split differently). Byte-level tokenizers may emit half
of a multi-byte character; such a token gets no text of its own and shares the span of the
character it helps complete, so a character span always maps back to every token that
carries part of it. Special tokens (e.g. ``<|im_end|>``) add no text: their span is empty,
at the end of the text so far.
"""

from __future__ import annotations

from typing import Any

_REPLACEMENT = "\ufffd"


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def token_char_spans(tokenizer: Any, token_ids: list[int]) -> tuple[str, list[tuple[int, int]], list[str]]:
    """Decode ``token_ids`` and locate each token in the result.

    Returns ``(text, spans, pieces)``: ``spans[i] = (start, end)`` such that
    ``text[start:end]`` is what token ``i`` contributed (``pieces[i]``), possibly shared
    with neighbours for split multi-byte characters, empty for special tokens.
    """
    text = _decode(tokenizer, list(token_ids))
    spans: list[tuple[int, int]] = []
    pending: list[int] = []  # tokens whose bytes have not yet completed a character
    stable = 0  # length of the prefix of `text` that earlier tokens already account for
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    for i in range(len(token_ids)):
        prefix = _decode(tokenizer, list(token_ids[: i + 1]))
        # An unfinished UTF-8 sequence decodes to U+FFFD; it is not text yet.
        unfinished = False
        while prefix.endswith(_REPLACEMENT) and not text[: len(prefix)].endswith(_REPLACEMENT):
            prefix = prefix[:-1]
            unfinished = True
        # Decoding is prefix-stable for the tokenizers we know; guard anyway.
        end = _common_prefix_length(prefix, text)
        if end > stable:
            for j in pending:  # they carried bytes of the character(s) completed now
                spans[j] = (spans[j][0], end)
            pending = []
            spans.append((stable, end))
            stable = end
        else:
            spans.append((stable, stable))
        # A token can finish some text and also start a character the next token completes.
        if token_ids[i] not in special and (unfinished or spans[-1][0] == spans[-1][1]):
            pending.append(i)
    pieces = [text[s:e] for s, e in spans]
    return text, spans, pieces


def _common_prefix_length(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
