"""``token_char_spans`` with a real byte-level tokenizer (the embedded SmolLM2's).

The ground truth is computed independently of ``decode``: each token's raw bytes come from
the byte-level alphabet of its vocabulary entry (GPT-2's ``bytes_to_unicode``), so a token
that carries part of a multi-byte character is known exactly. A token's expected span is
the range of characters its bytes belong to; a special token (no bytes) gets an empty span
at the end of the text so far.
"""

from __future__ import annotations

import pytest

from spill_guard.capture import token_char_spans


@pytest.fixture(scope="module")
def tok():
    transformers = pytest.importorskip("transformers")
    try:
        from spill_guard.models.embedded import smollm2_gguf
        from spill_guard.models.loader import converted_gguf

        path = converted_gguf(smollm2_gguf())
    except Exception as exc:  # noqa: BLE001 - not installed / not convertible here
        pytest.skip(f"embedded SmolLM2 tokenizer unavailable: {exc}")
    return transformers.AutoTokenizer.from_pretrained(path)


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_UNICODE_TO_BYTE = {c: b for b, c in _bytes_to_unicode().items()}


def token_bytes(tok, token_id: int) -> bytes:
    if token_id in set(tok.all_special_ids):
        return b""
    return bytes(_UNICODE_TO_BYTE[c] for c in tok.convert_ids_to_tokens(token_id))


def ground_truth(tok, ids: list[int]) -> tuple[str, list[set[int]], list[tuple[int, int]]]:
    """(text, characters each token carries bytes of, expected spans)."""
    ranges, data = [], b""
    for i in ids:
        b = token_bytes(tok, i)
        ranges.append((len(data), len(data) + len(b)))
        data += b
    text = data.decode("utf-8")
    char_of_byte = [ci for ci, ch in enumerate(text) for _ in ch.encode("utf-8")]
    carried, spans = [], []
    for b0, b1 in ranges:
        chars = set(char_of_byte[b0:b1])
        carried.append(chars)
        if chars:
            spans.append((min(chars), max(chars) + 1))
        else:
            done = char_of_byte[b0 - 1] + 1 if b0 else 0
            spans.append((done, done))
    return text, carried, spans


def encode(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


# Texts whose tokens never mix a complete character with part of another one.
SIMPLE = [
    "The capital of France is Paris.",
    "  two leading spaces",
    "   ",
    "日本語",  # split into single-byte and two-byte tokens
    "🙂",  # one character, two tokens
    "café",
    "naïve résumé",
    "Hi\n\n日本",
    "🙂🙂 ok",
    "→ 42",
]
# A space merged with the first byte of a CJK character into one token (' \xe6' = 'Ġæ'):
# that token carries part of the character.
MIXED = ["x 日", " 日本語", "a 🙂 b café 日本語"]


def test_fixture_tokenizer_really_splits_characters(tok):
    # Preconditions that make the cases below meaningful.
    assert len(encode(tok, "🙂")) == 2
    assert len(encode(tok, "日本語")) > 3
    assert any(len(token_bytes(tok, i)) > 1 and token_bytes(tok, i)[0] == 0x20 and token_bytes(tok, i)[1] >= 0x80
               for i in encode(tok, "x 日"))


@pytest.mark.parametrize("text", SIMPLE + MIXED)
def test_text_and_pieces(tok, text):
    ids = encode(tok, text)
    out_text, spans, pieces = token_char_spans(tok, ids)
    assert out_text == text
    assert len(spans) == len(pieces) == len(ids)
    for (s, e), piece in zip(spans, pieces):
        assert 0 <= s <= e <= len(text)
        assert text[s:e] == piece


@pytest.mark.parametrize("text", SIMPLE + MIXED)
def test_spans_cover_text_contiguously(tok, text):
    _, spans, _ = token_char_spans(tok, encode(tok, text))
    assert spans[0][0] == 0
    assert spans[-1][1] == len(text)
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s0 <= s1 and e0 <= e1  # monotone
        assert s1 <= e0  # no gap
    covered = set()
    for s, e in spans:
        covered.update(range(s, e))
    assert covered == set(range(len(text)))


@pytest.mark.parametrize("text", SIMPLE + MIXED)
def test_every_character_maps_back_to_every_token_carrying_its_bytes(tok, text):
    ids = encode(tok, text)
    truth_text, carried, _ = ground_truth(tok, ids)
    assert truth_text == text
    _, spans, _ = token_char_spans(tok, ids)
    for i, chars in enumerate(carried):
        s, e = spans[i]
        missing = sorted(c for c in chars if not s <= c < e)
        assert not missing, (
            f"token {i} (id {ids[i]}, bytes {token_bytes(tok, ids[i])!r}) carries chars "
            f"{[text[c] for c in missing]} at {missing} but its span is {(s, e)}"
        )


@pytest.mark.parametrize("text", SIMPLE + MIXED)
def test_spans_equal_byte_ownership(tok, text):
    ids = encode(tok, text)
    _, _, expected = ground_truth(tok, ids)
    assert token_char_spans(tok, ids)[1] == expected


def test_split_emoji_shares_one_span(tok):
    ids = encode(tok, "🙂")
    text, spans, pieces = token_char_spans(tok, ids)
    assert text == "🙂"
    assert spans == [(0, 1), (0, 1)]
    assert pieces == ["🙂", "🙂"]


def test_plain_ascii_spans(tok):
    ids = encode(tok, "hello world")
    text, spans, pieces = token_char_spans(tok, ids)
    assert text == "hello world"
    assert "".join(pieces) == text  # no sharing in plain ASCII
    assert spans == [(0, 5), (5, 11)]


@pytest.mark.parametrize("text", ["The answer is 42.", "日本語", "café 🙂"])
def test_trailing_special_token_gets_empty_span_at_end(tok, text):
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end in tok.all_special_ids
    ids = encode(tok, text) + [im_end]
    out_text, spans, pieces = token_char_spans(tok, ids)
    assert out_text == text  # the special token adds no text
    assert spans[-1] == (len(text), len(text)) and pieces[-1] == ""
    assert spans[:-1] == token_char_spans(tok, ids[:-1])[1]


def test_special_token_in_the_middle(tok):
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    head, tail = encode(tok, "Paris"), encode(tok, " France")
    text, spans, pieces = token_char_spans(tok, head + [im_end] + tail)
    assert text == "Paris France"
    assert spans[len(head)] == (5, 5) and pieces[len(head)] == ""
    assert spans[len(head) + 1][0] == 5 and spans[-1][1] == 12


def test_spans_use_the_given_ids_not_a_retokenisation(tok):
    # 'hello' spelled as single characters: a re-tokenisation would merge them.
    ids = [tok.convert_tokens_to_ids(c) for c in "hello"]
    assert ids != encode(tok, "hello")
    text, spans, pieces = token_char_spans(tok, ids)
    assert text == "hello"
    assert spans == [(i, i + 1) for i in range(5)]
