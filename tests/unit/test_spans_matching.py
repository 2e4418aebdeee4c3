"""find_answer: tolerant search with exact original offsets (hand-written, adversarial cases)."""

from __future__ import annotations

import pytest

from spill_guard import InvalidInputError, InvalidParameterError
from spill_guard.spans import CharSpan, find_all_answers, find_answer


def span_of(hay: str, needle: str, **kw) -> tuple[int, int, str] | None:
    s = find_answer(hay, needle, **kw)
    if s is None:
        return None
    assert hay[s.start : s.end] == s.text  # the contract, checked on every call here
    return s.start, s.end, s.text


def test_exact_match_offsets():
    assert span_of("The capital of Italy is Rome.", "Rome") == (24, 28, "Rome")


def test_case_and_trailing_punctuation_of_the_needle_are_ignored():
    assert span_of("The capital of Italy is Rome.", '"rome."') == (24, 28, "Rome")


def test_answer_appearing_twice_prefers_last_by_default():
    hay = "Paris? Yes, Paris."
    assert span_of(hay, "Paris") == (12, 17, "Paris")
    assert span_of(hay, "Paris", prefer="first") == (0, 5, "Paris")
    assert [s.start for s in find_all_answers(hay, "paris")] == [0, 12]


def test_absent_answer_is_none():
    assert find_answer("The capital of Italy is Rome.", "Milan") is None


def test_word_boundaries_block_substrings():
    assert find_answer("Romeo and Juliet", "Rome") is None
    assert find_answer("It was 13 years.", "3") is None
    assert find_answer("About 3.5 metres.", "3") is None  # a decimal point is not a boundary
    assert find_answer("About 3.5 metres.", "35") is None
    assert span_of("About 3.5 metres.", "3.5") == (6, 9, "3.5")


@pytest.mark.parametrize(
    "hay, needle, expected",
    [
        ("It is Bogotá.", "Bogota", (6, 12, "Bogotá")),  # accent dropped by the extractor
        ("It is Bogota.", "Bogotá", (6, 12, "Bogota")),  # accent added by the extractor
        ("It is Bogota\u0301.", "bogotá", (6, 13, "Bogota\u0301")),  # combining accent stays in the span
        ("Søren Kierkegaard wrote it.", "Soren Kierkegaard", (0, 17, "Søren Kierkegaard")),
        ("Die Straße ist lang.", "strasse", (4, 10, "Straße")),
        ("The ﬁnal answer", "final", (4, 8, "ﬁnal")),  # one ligature char folds to two letters
    ],
)
def test_accents_and_unicode_folding(hay, needle, expected):
    assert span_of(hay, needle) == expected


def test_offsets_count_code_points_after_multibyte_chars():
    hay = "😀 東京 — the answer is Paris"
    assert span_of(hay, "paris") == (len(hay) - 5, len(hay), "Paris")


def test_unspaced_script_needs_no_word_boundary():
    assert span_of("日本の首都は東京です。", "東京") == (6, 8, "東京")


def test_match_never_cuts_a_character_that_folds_to_several_letters():
    # "ゟ" (hiragana digraph) folds to "より"; in a script without spaces only the word
    # boundary check would not stop "よ" matching half of it.
    assert find_answer("これゟ", "よ") is None
    assert span_of("これゟ", "より") == (2, 3, "ゟ")


def test_needle_without_letters_is_searched_verbatim():
    assert span_of("Mood: 😀, then 😀!", "😀") == (14, 15, "😀")
    assert find_answer("Mood: 😀", "🙂") is None


def test_punctuation_and_whitespace_between_words_are_flexible():
    assert span_of('He said "Jean-Paul Sartre."', "jean paul sartre") == (9, 25, "Jean-Paul Sartre")
    assert span_of("It is New\n   York City", "new york") == (6, 17, "New\n   York")


def test_thousands_separator_is_transparent_but_not_a_boundary():
    assert span_of("Total: 1,234 items", "1234") == (7, 12, "1,234")
    assert span_of("Total: 1234 items", "1,234") == (7, 11, "1234")
    assert find_answer("Total: 1,234 items", "1") is None
    assert find_answer("Total: 1,234 items", "234") is None


def test_strict_match_beats_loose_match_even_if_earlier():
    # "NewYork" matches "New York" only loosely; the strict (spaced) occurrence wins
    # although prefer="last" would otherwise take the later one.
    hay = "New York, also written NewYork"
    assert span_of(hay, "New York") == (0, 8, "New York")
    assert span_of("written NewYork", "New York") == (8, 15, "NewYork")  # loose as a last resort


def test_span_never_includes_surrounding_whitespace_or_quotes():
    assert span_of('  the answer: "  Paris  " ', "  Paris ") == (17, 22, "Paris")


@pytest.mark.parametrize(
    "hay, needle", [("", "Paris"), ("   ", "Paris"), ("Paris", ""), ("Paris", "   "), ("Paris", "?!")]
)
def test_empty_inputs_give_none(hay, needle):
    assert find_answer(hay, needle) is None


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(InvalidParameterError, match="'middle'"):
        find_answer("Paris", "Paris", prefer="middle")
    with pytest.raises(InvalidInputError, match="needle must be a str.*None"):
        find_answer("Paris", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="haystack must be a str"):
        find_answer(b"Paris", "Paris")  # type: ignore[arg-type]


def test_results_are_charspans():
    s = find_answer("a Paris b", "Paris")
    assert isinstance(s, CharSpan) and s == CharSpan(2, 7, "Paris")
