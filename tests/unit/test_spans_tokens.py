"""Character span -> generated-token range, on hand-built tokens and on real SmolLM2 tokens."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from spill_guard import InvalidInputError, InvalidParameterError, TokenRecord
from spill_guard.spans import (
    CharSpan,
    LLMExtractorLocator,
    NumericLocator,
    char_span_to_token_range,
    find_answer,
    locate_tokens,
    make_locator,
)


def tokens_from(pieces: list[str | None], shared: dict[int, int] | None = None) -> tuple[str, list[TokenRecord]]:
    """Tokens laid end to end; ``None`` is a special token (empty span, no text).

    ``shared = {i: j}`` gives token ``i`` the span of token ``j``, as token_offsets does for
    the tokens that split one multi-byte character.
    """
    text, spans = "", []
    for piece in pieces:
        spans.append((len(text), len(text) + len(piece or "")))
        text += piece or ""
    for i, j in (shared or {}).items():
        spans[i] = spans[j]
    tokens = [
        TokenRecord(id=k, text=text[s:e], start=s, end=e, special=piece is None)
        for k, (piece, (s, e)) in enumerate(zip(pieces, spans))
    ]
    return text, tokens


# ------------------------------------------------------------------------- hand-built
TEXT, TOKENS = tokens_from(["The", " capital", " of", " Italy", " is", " Ro", "me", ".", None])


def test_leading_space_token_is_covered_by_the_stripped_word():
    span = find_answer(TEXT, "Italy")  # [15, 20); the token " Italy" is [14, 20)
    assert char_span_to_token_range(TOKENS, span) == (3, 4)


def test_word_split_over_tokens_takes_all_of_them():
    assert char_span_to_token_range(TOKENS, find_answer(TEXT, "Rome")) == (5, 7)


def test_partial_overlap_includes_the_token():
    # "Rom" cuts "me" off; "e" alone lies inside "me".
    assert char_span_to_token_range(TOKENS, CharSpan(24, 27, "Rom")) == (5, 7)
    assert char_span_to_token_range(TOKENS, CharSpan(27, 28, "e")) == (6, 7)


def test_touching_but_not_overlapping_tokens_are_excluded():
    # "is" is [21, 23): " of" ends at 14 and " Ro" starts at 23, neither overlaps.
    assert char_span_to_token_range(TOKENS, CharSpan(21, 23, "is")) == (4, 5)


def test_special_token_at_the_end_is_never_included():
    assert TOKENS[-1].special and TOKENS[-1].start == TOKENS[-1].end == len(TEXT)
    assert char_span_to_token_range(TOKENS, CharSpan(24, 29, "Rome.")) == (5, 8)


def test_tokens_sharing_a_multibyte_character_are_all_included():
    # "é" split over two byte tokens: the first adds no text and shares the span [3, 4).
    text, tokens = tokens_from(["Caf", "é", "", " au lait"], shared={2: 1})
    assert text == "Café au lait" and (tokens[1].start, tokens[1].end) == (tokens[2].start, tokens[2].end) == (3, 4)
    assert char_span_to_token_range(tokens, CharSpan(0, 4, "Café")) == (0, 3)
    assert char_span_to_token_range(tokens, CharSpan(3, 4, "é")) == (1, 3)


def test_token_that_starts_a_character_overlaps_it():
    # As token_offsets reports "Mood: 😀!": "ĠðŁĺ" = space + 3 bytes of 😀 spans [5, 7),
    # "Ģ" (the last byte) spans [6, 7).
    spans = [(0, 4), (4, 5), (5, 7), (6, 7), (7, 8)]
    tokens = [TokenRecord(id=k, text="", start=a, end=b) for k, (a, b) in enumerate(spans)]
    assert char_span_to_token_range(tokens, CharSpan(6, 7, "😀")) == (2, 4)
    assert char_span_to_token_range(tokens, CharSpan(4, 5, ":")) == (1, 2)


def test_plain_objects_with_offsets_work_too():
    toks = [SimpleNamespace(start=0, end=3, special=False), SimpleNamespace(start=3, end=9, special=False)]
    assert char_span_to_token_range(toks, CharSpan(4, 6, "ar")) == (1, 2)


def test_span_outside_the_tokens_raises_with_the_values():
    with pytest.raises(InvalidInputError, match=r"\[40, 44\) 'Rome'.*29 characters.*ScoredAnswer.answer"):
        char_span_to_token_range(TOKENS, CharSpan(40, 44, "Rome"))
    with pytest.raises(InvalidInputError, match="no token overlaps"):
        char_span_to_token_range([SimpleNamespace(start=0, end=2, special=True)], CharSpan(0, 2, "ab"))
    with pytest.raises(InvalidInputError, match="must be a CharSpan, got tuple"):
        char_span_to_token_range(TOKENS, (0, 3))  # type: ignore[arg-type]


def test_locate_tokens_on_a_hand_built_answer():
    answer = SimpleNamespace(answer=TEXT, tokens=TOKENS)
    assert locate_tokens(answer, make_locator("answer_is")) == (5, 7)
    assert locate_tokens(answer, NumericLocator()) is None
    with pytest.raises(InvalidParameterError, match="must be a SpanLocator"):
        locate_tokens(answer, "answer_is")  # type: ignore[arg-type]


# ------------------------------------------------------------------------ real tokens
QUESTIONS = ["What is the capital of Colombia?", "How far is it?", "What is the capital of France?"]
ANSWERS = ["The capital of Colombia is Bogotá.", "It is 1,234 km away.", " Paris? Yes, Paris."]


@pytest.fixture(scope="module")
def scored(spill_model):
    """Real ScoredAnswers with real token offsets, all three in one teacher-forced pass."""
    tok = spill_model.tokenizer
    prompts = [spill_model.prompt_ids(q) for q in QUESTIONS]
    answers = [tok(a, add_special_tokens=False)["input_ids"] for a in ANSWERS]
    return spill_model.score_ids(prompts, answers)


def assert_minimal_cover(tokens, span, rng):
    a, b = rng
    overlaps = lambda t: not t.special and t.start < span.end and t.end > span.start  # noqa: E731
    assert all(overlaps(t) for t in tokens[a:b])  # nothing extra inside the range
    assert not any(overlaps(t) for t in tokens[:a] + tokens[b:])  # nothing missed outside it
    covered = "".join(t.text for t in tokens[a:b])
    assert span.text in covered


@pytest.mark.model
def test_real_tokens_accented_answer(scored):
    ans = scored[0]
    span = find_answer(ans.answer, "Bogota")
    assert span.text == "Bogotá"
    rng = char_span_to_token_range(ans.tokens, span)
    assert_minimal_cover(ans.tokens, span, rng)
    assert rng[1] - rng[0] >= 2  # SmolLM2 splits "Bogotá" (measured: " Bog", "ot", "á")


@pytest.mark.model
def test_real_tokens_number_with_comma(scored):
    ans = scored[1]
    span = NumericLocator().locate(ans.answer)
    assert span.text == "1,234"
    rng = char_span_to_token_range(ans.tokens, span)
    assert_minimal_cover(ans.tokens, span, rng)
    assert "".join(t.text for t in ans.tokens[slice(*rng)]).strip() == "1,234"


@pytest.mark.model
def test_real_tokens_repeated_answer_maps_the_last_mention_and_scores(scored):
    ans = scored[2]
    assert ans.answer == " Paris? Yes, Paris."  # leading space kept: offsets index this text
    locator = LLMExtractorLocator(lambda prompt: " Paris")
    rng = locate_tokens(ans, locator, question=QUESTIONS[2])
    span = locator.locate(ans.answer)
    assert span.start == 13
    assert_minimal_cover(ans.tokens, span, rng)
    assert rng[0] > 0 and all(t.start >= 12 for t in ans.tokens[slice(*rng)])
    # The range plugs straight into ScoredAnswer.score and differs from the whole answer.
    assert math.isfinite(ans.score("spilled_energy:min", *rng))
    assert rng != (0, len(ans.tokens))


def byte_level_bytes(token: str) -> bytes:
    """Raw bytes of a byte-level BPE token string (the GPT-2 scheme SmolLM2 uses).

    Printable Latin-1 bytes stand for themselves; the other bytes were shifted to 256 + k in
    byte order, so the inverse is rebuilt from that rule.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    shifted = [b for b in range(256) if b not in printable]
    inverse = {chr(b): b for b in printable} | {chr(256 + k): b for k, b in enumerate(shifted)}
    return bytes(inverse[c] for c in token)


@pytest.mark.model
def test_real_tokens_emoji_includes_every_byte_token(spill_model):
    # A token can end with the first bytes of a character it does not finish ("ĠðŁĺ" is a
    # space plus 3 of the 4 bytes of 😀); the character must map to it as well as to "Ģ".
    tok = spill_model.tokenizer
    answer = "Mood: 😀!"
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    [ans] = spill_model.score_ids([spill_model.prompt_ids("Mood?")], [ids])
    pieces = [byte_level_bytes(t) for t in tok.convert_ids_to_tokens(ans.answer_ids)]
    assert b"".join(pieces) == answer.encode()  # the byte bookkeeping itself is right
    lo = len("Mood: ".encode())
    hi = lo + len("😀".encode())
    carriers, pos = [], 0
    for i, piece in enumerate(pieces):
        if pos < hi and pos + len(piece) > lo:
            carriers.append(i)
        pos += len(piece)
    assert len(carriers) >= 2  # measured: SmolLM2 splits this emoji over two tokens
    a, b = char_span_to_token_range(ans.tokens, find_answer(ans.answer, "😀"))
    assert (a, b) == (carriers[0], carriers[-1] + 1)
