"""Cheap locators, the base contract, composition and the registry (hand-written cases)."""

from __future__ import annotations

import pytest

from spill_guard import InvalidInputError, InvalidParameterError
from spill_guard.spans import (
    LOCATORS,
    AnswerIsLocator,
    CallableLocator,
    CharSpan,
    FirstOfLocator,
    LocateResult,
    NumericLocator,
    QuotedLocator,
    Reason,
    SpanLocator,
    StripFillerLocator,
    make_locator,
)


def text_of(locator: SpanLocator, answer: str, **kw) -> str | None:
    span = locator.locate(answer, **kw)
    if span is None:
        return None
    assert answer[span.start : span.end] == span.text and span.text == span.text.strip()
    return span.text


# --------------------------------------------------------------------------- contract
def test_charspan_rejects_empty_unstripped_and_inconsistent_spans():
    with pytest.raises(InvalidInputError, match=r"\[3, 3\)"):
        CharSpan(3, 3, "")
    with pytest.raises(InvalidInputError, match="whitespace"):
        CharSpan(0, 6, " Paris")
    with pytest.raises(InvalidInputError, match="length"):
        CharSpan(0, 4, "Paris")
    with pytest.raises(InvalidInputError, match="integers"):
        CharSpan(0.0, 5, "Paris")  # type: ignore[arg-type]


def test_charspan_within_strips_and_checks_bounds():
    assert CharSpan.within("  Paris \n", 0, 9) == CharSpan(2, 7, "Paris")
    assert CharSpan.within("a   b", 1, 4) is None
    with pytest.raises(InvalidInputError, match=r"\(2, 99\).*5 characters"):
        CharSpan.within("Paris", 2, 99)


def test_locate_result_keeps_found_iff_span():
    with pytest.raises(InvalidParameterError, match="Reason.FOUND"):
        LocateResult(None, Reason.FOUND, "x")
    with pytest.raises(InvalidParameterError):
        LocateResult(CharSpan(0, 1, "a"), Reason.NOT_FOUND, "x")


@pytest.mark.parametrize("locator", [cls() for cls in LOCATORS.values()], ids=list(LOCATORS))
@pytest.mark.parametrize("answer", ["", "   \n "])
def test_empty_generation_gives_none_with_reason(locator, answer):
    result = locator.locate_with_reason(answer)
    assert result.span is None and result.reason is Reason.EMPTY_ANSWER and result.locator == locator.name


def test_non_string_answer_or_question_is_rejected():
    with pytest.raises(InvalidInputError, match="answer must be a str, got NoneType"):
        NumericLocator().locate(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="question must be a str or None, got int"):
        NumericLocator().locate("3", question=3)  # type: ignore[arg-type]


def test_base_class_rejects_a_span_that_is_not_a_slice_of_the_answer():
    class Liar(SpanLocator):
        name = "liar"

        def _locate(self, answer, question):
            return self._result(CharSpan(0, 5, "Paris"))

    with pytest.raises(InvalidParameterError, match="'liar'.*not a slice"):
        Liar().locate("Rome is the capital.")


# ---------------------------------------------------------------------------- numeric
@pytest.mark.parametrize(
    "answer, expected",
    [
        ("6 - 3 is 3.", (9, "3")),  # the 3 after 'is', not the 6, nor the first 3
        ("2 + 2 is 4, which is even.", (9, "4")),  # a later cue without a number is skipped
        ("The sum is 12, so the mean is 4.", (30, "4")),  # the last cue with a number wins
        ("It costs 1,234 dollars.", (9, "1,234")),
        ("The result is -3.", (14, "-3")),
        ("x=-3", (2, "-3")),
        ("6-3=3", (4, "3")),  # no spaces: '-' is an operator, '=' the cue
        ("Pi is about 3.14.", (12, "3.14")),  # the final period is not a decimal point
        ("I counted 3 cats, then 5 dogs", (23, "5")),  # no cue: the last number
        ("H2O has 3 atoms", (8, "3")),  # digits inside a word are skipped
        ("COVID-19 began in 2019.", (18, "2019")),
        ("The total is 1,234.5 units", (13, "1,234.5")),
        ("The answer is −7", (14, "−7")),  # U+2212 minus sign
    ],
)
def test_numeric_locator(answer, expected):
    span = NumericLocator().locate(answer)
    assert span is not None and (span.start, span.text) == expected
    assert answer[span.start : span.end] == span.text


@pytest.mark.parametrize("answer", ["No number here.", "the 3rd one", "mp3 and H2O", "COVID-19"])
def test_numeric_locator_without_standalone_number(answer):
    result = NumericLocator().locate_with_reason(answer)
    assert result.span is None and result.reason is Reason.NOT_FOUND


# ----------------------------------------------------------------------------- quoted
@pytest.mark.parametrize(
    "answer, expected",
    [
        ("The answer is **Paris.**", "Paris"),  # trailing punctuation inside the mark dropped
        ('He said "hello" and then **Rome**', "Rome"),  # bold beats quotes
        ("**Answer:** the city of **Rome**", "Rome"),  # a bold label is skipped
        ('He said "hello" and “goodbye”', "goodbye"),  # last quote wins
        ("It is *very* hot", "very"),
        ("Capital: «Paris»", "Paris"),
    ],
)
def test_quoted_locator(answer, expected):
    assert text_of(QuotedLocator(), answer) == expected


def test_quoted_locator_prefer_first():
    assert text_of(QuotedLocator(prefer="first"), 'He said "hello" and “goodbye”') == "hello"


@pytest.mark.parametrize("answer", ["2 * 3 * 4 = 24", "**Answer:** Paris", "plain text", 'odd " quote'])
def test_quoted_locator_finds_nothing(answer):
    assert QuotedLocator().locate(answer) is None


# -------------------------------------------------------------------------- answer is
@pytest.mark.parametrize(
    "answer, expected",
    [
        ("The capital of Italy is Rome.", "Rome"),
        ("Sure! The answer is 5.", "5"),  # the first sentence *with a cue* decides
        ("The answer is that it is 42. It is 7.", "42"),  # last cue of that sentence
        ("Answer:\nParis", "Paris"),  # label on its own line
        ("x = 3.5 exactly", "3.5 exactly"),  # "3.5" does not end a sentence
        ("The planets are Mars and Venus!", "Mars and Venus"),
    ],
)
def test_answer_is_locator(answer, expected):
    assert text_of(AnswerIsLocator(), answer) == expected


@pytest.mark.parametrize("answer", ["Yes, it is.", "Hello there", "We left at 10:30."])
def test_answer_is_locator_finds_nothing(answer):
    assert AnswerIsLocator().locate(answer) is None


# ----------------------------------------------------------------------- strip filler
@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Sure! I think the answer is Paris.", "Paris"),
        ("Okay, well, Certainly! 42", "42"),
        ("Paris.<|im_end|>", "Paris"),
        ("  **Rome**.\n", "Rome"),
        ("Sofia.", "Sofia"),  # "So" is filler only as a whole word
        ("Answer: Bogotá</s>", "Bogotá"),
        ("Yes, it is.", "Yes, it is"),  # "Yes" is an answer, not filler
    ],
)
def test_strip_filler_locator(answer, expected):
    assert text_of(StripFillerLocator(), answer) == expected


def test_strip_filler_with_only_filler_is_none():
    result = StripFillerLocator().locate_with_reason("Sure! ")
    assert result.span is None and result.reason is Reason.NOT_FOUND


# ------------------------------------------------------------------------- callable
def test_callable_locator_accepts_offsets_strings_spans_and_none():
    answer = "Paris? Yes,  Paris ."
    assert CallableLocator(lambda a: (11, 19)).locate(answer) == CharSpan(13, 18, "Paris")
    assert CallableLocator(lambda a: "paris").locate(answer) == CharSpan(13, 18, "Paris")  # last match
    assert CallableLocator(lambda a: "paris", prefer="first").locate(answer) == CharSpan(0, 5, "Paris")
    assert CallableLocator(lambda a: CharSpan(0, 5, "Paris")).locate(answer) == CharSpan(0, 5, "Paris")
    assert CallableLocator(lambda a: None).locate_with_reason(answer).reason is Reason.NOT_FOUND


def test_callable_locator_passes_the_question_when_asked_for():
    seen = []

    def fn(answer, question=None):
        seen.append(question)
        return "Rome"

    loc = CallableLocator(fn, "mine")
    assert loc.name == "mine" and loc.locate("Rome.", question="Capital of Italy?").text == "Rome"
    assert seen == ["Capital of Italy?"]


def test_callable_locator_string_not_in_answer_is_reported():
    result = CallableLocator(lambda a: "Milan").locate_with_reason("It is Rome.")
    assert result.span is None and result.reason is Reason.EXTRACTED_NOT_IN_ANSWER and result.extracted == "Milan"


def test_callable_locator_bad_returns_raise_with_the_value():
    with pytest.raises(InvalidParameterError, match=r"\(2, 99\).*5 characters"):
        CallableLocator(lambda a: (2, 99), "f").locate("Paris")
    with pytest.raises(InvalidParameterError, match=r"\[1, 2\] \(list\)"):
        CallableLocator(lambda a: [1, 2], "f").locate("Paris")
    with pytest.raises(InvalidParameterError, match="needs a callable"):
        CallableLocator("not callable")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- composition
def test_first_of_tries_in_order_and_names_the_winner():
    loc = FirstOfLocator([QuotedLocator(), NumericLocator(), StripFillerLocator()])
    assert loc.name == "quoted+numeric+strip_filler"
    r = loc.locate_with_reason("Well, 6 - 3 is 3.")
    assert r.span.text == "3" and r.span.start == 15 and r.locator == "numeric"
    r = loc.locate_with_reason('It is "Rome", 2 km away')
    assert r.span.text == "Rome" and r.locator == "quoted"


def test_first_of_reports_every_failure():
    r = FirstOfLocator([QuotedLocator(), NumericLocator()]).locate_with_reason("nothing to see")
    assert r.span is None and r.reason is Reason.NOT_FOUND
    assert "quoted: not_found" in r.detail and "numeric: not_found" in r.detail


def test_first_of_rejects_bad_members():
    with pytest.raises(InvalidParameterError, match="at least one"):
        FirstOfLocator([])
    with pytest.raises(InvalidParameterError, match="CallableLocator"):
        FirstOfLocator([QuotedLocator(), len])  # type: ignore[list-item]


# ------------------------------------------------------------------------- registry
def test_registry_names_and_make_locator():
    assert set(LOCATORS) == {"numeric", "quoted", "answer_is", "strip_filler", "full"}
    assert isinstance(make_locator("numeric"), NumericLocator)
    chained = make_locator("quoted + answer_is+strip_filler")
    assert isinstance(chained, FirstOfLocator)
    assert chained.locate("Sure! The capital of Italy is Rome.").text == "Rome"


@pytest.mark.parametrize("bad", ["numerik", "quoted+", "", None])
def test_make_locator_unknown_name(bad):
    with pytest.raises(InvalidParameterError, match="choose from"):
        make_locator(bad)  # type: ignore[arg-type]


def test_whole_answer_locator_takes_everything_but_surrounding_space():
    from spill_guard.spans import make_locator

    loc = make_locator("full")
    span = loc.locate("  The capital is Rome.\n")
    assert span is not None and span.text == "The capital is Rome." and span.start == 2
    assert loc.locate("   ") is None
