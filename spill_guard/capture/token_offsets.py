"""Character offsets of generated tokens inside the decoded answer.

Offsets come from decoding growing prefixes of the *generated ids*, never from
re-tokenising the text (which can split differently). Each prefix is decoded incrementally,
from a short window of recent tokens (:func:`_prefix_texts`), so an answer of ``T`` tokens costs
``O(T)`` decoding, not ``O(T²)``. Byte-level tokenizers may emit half
of a multi-byte character; such a token gets no text of its own and shares the span of the
character it helps complete, so a character span always maps back to every token that
carries part of it. Special tokens (e.g. ``<|im_end|>``) add no text: their span is empty,
at the end of the text so far.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    for i, prefix in enumerate(_prefix_texts(tokenizer, list(token_ids))):
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


#: Tokens a decoding window grows to before it restarts at a later whole-character boundary.
_WINDOW = 16


def _prefix_texts(tokenizer: Any, ids: list[int]) -> Iterator[str]:
    """``decode(ids[: i + 1])`` for each ``i``, without decoding every growing prefix.

    ``anchor`` is a boundary where the decoded prefix ends on a whole character (no trailing
    U+FFFD) and ``head`` that prefix's text. The text after it is read off a window that starts
    at an earlier such boundary, ``context``, which holds at least one text token: the window's
    decode is the decode of ``ids[context:anchor]`` (``base``) followed by the new text. Starting
    the window before the anchor keeps what a decoder does to the first token it sees (e.g. a
    SentencePiece ``Strip`` of its leading space) out of the new text. Where a window's decode
    does not extend ``base`` (a decoder that is not local there), that prefix is decoded whole.
    """
    head, base = "", ""
    anchor = context = 0
    previous = 0  # the anchor before the current one: where the window restarts
    for i in range(len(ids)):
        window = _decode(tokenizer, ids[context : i + 1])
        prefix = head + window[len(base) :] if window.startswith(base) else _decode(tokenizer, ids[: i + 1])
        yield prefix
        if prefix.endswith(_REPLACEMENT):
            continue  # an unfinished character (or a lasting U+FFFD): not a boundary to build on
        previous, anchor, head, base = anchor, i + 1, prefix, window
        if anchor - context > _WINDOW and previous > context:
            restarted = _decode(tokenizer, ids[previous:anchor])
            if restarted:  # the window's first token is left alone by what follows only if it holds text
                context, base = previous, restarted


def _common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b``; the comparisons run in C.

    Called once per token with the text decoded so far: a character loop in Python would make
    the whole answer cost ``O(T²)`` interpreted steps again. Usually one string starts with
    the other; otherwise a binary search over prefix equality (monotone) finds the length.
    """
    if len(a) <= len(b) and b.startswith(a):
        return len(a)
    if len(b) < len(a) and a.startswith(b):
        return len(b)
    lo, hi = 0, min(len(a), len(b))  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a.startswith(b[:mid]):
            lo = mid
        else:
            hi = mid
    return lo
