"""``token_char_spans`` (incremental decoding) gives exactly what decoding every prefix gave.

The reference below is the earlier implementation, kept verbatim: it decoded ``ids[: i + 1]``
for every ``i`` (O(T²)). Hypothesis draws id sequences over real tokenizers, weighted towards
what breaks incremental decoding: tokens carrying part of a multi-byte character, byte-fallback
tokens, special tokens anywhere, and answers longer than the decoding window.

Tokenizers: the embedded SmolLM2's (byte-level BPE), a SentencePiece-style one built with the
``tokenizers`` library (``▁`` pieces, byte fallback and a ``Strip`` of the first leading space,
as Llama 2 / Mistral ship), and Gemma 3's (byte fallback, no strip; slow to load, marked ``model``).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spill_guard.capture import token_char_spans

transformers = pytest.importorskip("transformers")

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])
TEXTS = ["The capital of France is Paris.", "日本語のテキスト", "Café au lait, naïve résumé", "🙂🙂 ok 👍🏽",
         "→ 42 ≠ 41", "  two  spaces\n\nnew line", "Ωμέγα", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "a\u0301 combining", "\ufffd literal"]


# ----------------------------------------------------------------------------- the old implementation
_REPLACEMENT = "\ufffd"


def _decode(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def reference_token_char_spans(tokenizer, token_ids):
    text = _decode(tokenizer, list(token_ids))
    spans = []
    pending = []
    stable = 0
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    for i in range(len(token_ids)):
        prefix = _decode(tokenizer, list(token_ids[: i + 1]))
        unfinished = False
        while prefix.endswith(_REPLACEMENT) and not text[: len(prefix)].endswith(_REPLACEMENT):
            prefix = prefix[:-1]
            unfinished = True
        end = _common_prefix_length(prefix, text)
        if end > stable:
            for j in pending:
                spans[j] = (spans[j][0], end)
            pending = []
            spans.append((stable, end))
            stable = end
        else:
            spans.append((stable, stable))
        if token_ids[i] not in special and (unfinished or spans[-1][0] == spans[-1][1]):
            pending.append(i)
    pieces = [text[s:e] for s, e in spans]
    return text, spans, pieces


def _common_prefix_length(a, b):
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# ----------------------------------------------------------------------------- tokenizers and id pools
def _pools(tok, partial: list[int]) -> dict[str, list[int]]:
    text_ids = sorted({i for t in TEXTS for i in tok.encode(t, add_special_tokens=False)})
    return {"partial": partial, "special": sorted(set(tok.all_special_ids)), "text": text_ids, "vocab": [len(tok) - 1]}


def _bytes_to_unicode() -> dict[int, str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(rest)}}


@pytest.fixture(scope="module")
def smollm2():
    try:
        from spill_guard.models.embedded import smollm2_gguf
        from spill_guard.models.loader import converted_gguf

        tok = transformers.AutoTokenizer.from_pretrained(converted_gguf(smollm2_gguf()))
    except Exception as exc:  # noqa: BLE001 - not installed / not convertible here
        pytest.skip(f"embedded SmolLM2 tokenizer unavailable: {exc}")
    # Byte-level tokens holding a byte >= 0x80 (parts of multi-byte characters), by GPT-2's byte alphabet.
    high = {c for b, c in _bytes_to_unicode().items() if b >= 0x80}
    partial = [i for t, i in tok.get_vocab().items() if any(c in high for c in t)]
    return tok, _pools(tok, partial)


@pytest.fixture(scope="module")
def sentencepiece_strip():
    from tokenizers import Tokenizer, decoders, models

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece in ["▁", "▁▁", "▁the", "▁a", "a", "b", "▁caf", "é", "日本", "▁日", ".", "▁Paris", "▁🙂"]:
        vocab[piece] = len(vocab)
    model = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    model.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                       decoders.Strip(" ", 1, 0)])
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=model, bos_token="<s>", eos_token="</s>",
                                               unk_token="<unk>")
    assert _decode(tok, [vocab["▁the"]]) == "the"  # the decoder really strips the first leading space
    return tok, {"partial": list(range(3, 259)), "special": [0, 1, 2], "text": list(range(259, len(vocab))),
                 "vocab": [len(vocab) - 1]}


@pytest.fixture(scope="module")
def gemma():
    try:
        from spill_guard.models.embedded import gemma3_gguf

        path = gemma3_gguf()
    except Exception as exc:  # noqa: BLE001 - the optional Gemma package is not installed
        pytest.skip(f"Gemma 3 270M unavailable: {exc}")
    tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    partial = [i for t, i in tok.get_vocab().items() if re.fullmatch(r"<0x[0-9A-F]{2}>", t)]
    assert len(partial) == 256
    return tok, _pools(tok, partial)


def id_lists(pools: dict[str, list[int]]):
    last = pools["vocab"][0]
    one = st.one_of(st.sampled_from(pools["partial"]), st.sampled_from(pools["partial"]),
                    st.sampled_from(pools["special"]), st.sampled_from(pools["text"]), st.integers(0, last))
    return st.lists(one, min_size=1, max_size=60)


def check(tok, ids):
    assert token_char_spans(tok, ids) == reference_token_char_spans(tok, ids)


# ----------------------------------------------------------------------------- the properties
@given(data=st.data())
@FUZZ
def test_smollm2_spans_equal_the_prefix_decoding(smollm2, data):
    tok, pools = smollm2
    check(tok, data.draw(id_lists(pools)))


@given(text=st.text(max_size=80), specials=st.lists(st.integers(0, 80), max_size=3), data=st.data())
@FUZZ
def test_smollm2_spans_of_encoded_text_with_specials_inserted(smollm2, text, specials, data):
    tok, pools = smollm2
    ids = tok.encode(text, add_special_tokens=False)
    for at in specials:
        ids.insert(min(at, len(ids)), data.draw(st.sampled_from(pools["special"])))
    check(tok, ids)


@given(data=st.data())
@FUZZ
def test_sentencepiece_strip_spans_equal_the_prefix_decoding(sentencepiece_strip, data):
    tok, pools = sentencepiece_strip
    check(tok, data.draw(id_lists(pools)))


def test_long_answers_cross_the_decoding_window(smollm2, sentencepiece_strip):
    for tok, _ in (smollm2, sentencepiece_strip):
        ids = tok.encode(" ".join(TEXTS) * 4, add_special_tokens=False)
        assert len(ids) > 100
        check(tok, ids)


@pytest.mark.model
@given(data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
def test_gemma_spans_equal_the_prefix_decoding(gemma, data):
    tok, pools = gemma
    check(tok, data.draw(id_lists(pools)))


class CountingTokenizer:
    """The real tokenizer, counting the ids it is asked to decode."""

    def __init__(self, tok):
        self.tok, self.decoded, self.calls = tok, 0, 0
        self.all_special_ids = tok.all_special_ids

    def decode(self, ids, **options):
        self.decoded += len(ids)
        self.calls += 1
        return self.tok.decode(ids, **options)


@pytest.mark.parametrize("n_tokens", [100, 800])
def test_decoding_work_grows_linearly_with_the_answer(smollm2, n_tokens):
    tok, _ = smollm2
    ids = (tok.encode(" ".join(TEXTS), add_special_tokens=False) * 100)[:n_tokens]
    counting = CountingTokenizer(tok)
    assert token_char_spans(counting, ids) == reference_token_char_spans(tok, ids)
    # Decoding every prefix read n²/2 ids (5,050 and 320,400 here); windows of at most ~2 x 16 tokens.
    assert counting.calls <= 2 * n_tokens + 1 and counting.decoded <= 40 * n_tokens
