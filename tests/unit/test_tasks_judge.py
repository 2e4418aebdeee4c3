"""The answer normaliser and the span judge, including the question-echo trap.

The last test measures the judge against hand labels (tests/unit/data/judge_labelled.jsonl):
each line is a realistic answer span a small model could produce, with the label a person
gives it. The labels were written before running the judge on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spill_guard.errors import InvalidInputError
from spill_guard.tasks import judge, judge_verdict, normalize_answer

LABELLED = Path(__file__).parent / "data" / "judge_labelled.jsonl"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Paris", "paris"),
        ("  The   Aluminium! ", "aluminium"),
        ("an apple a day", "apple day"),
        ("Bogotá", "bogota"),
        ("São Tomé", "sao tome"),
        ("Reykjavík", "reykjavik"),
        ("Port-au-Prince", "port au prince"),
        ("Nuku'alofa", "nukualofa"),
        ("Nuku\u2019alofa", "nukualofa"),
        ("St. John's", "st johns"),
        ("1,234", "1234"),
        ("1,234,567.50", "1234567.5"),
        ("3.0", "3"),
        ("3.50", "3.5"),
        ("-3", "-3"),
        ("\u22123", "-3"),
        ("-0", "0"),
        ("The answer is -3.", "answer is -3"),
        ("6-3", "6 3"),
        ("6 - 3 = 3", "6 3 equals 3"),
        ("x=-3", "x equals -3"),
        ("1,2,3", "1 2 3"),
        ("$85.", "85"),
        ("twelve", "12"),
        ("Zero", "0"),
        ("twenty", "20"),
        ("eighty-five", "85"),
        ("eighty five", "85"),
        ("negative three", "-3"),
        ("six minus three", "6 minus 3"),
        ("one hundred", "1 hundred"),
        ("h2o", "h2o"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    "span, answers, expected",
    [
        # the adversarial echo: the gold number is present but is not the answer
        ("6 - 3 is 1", ["3"], False),
        ("6 - 3 is 1.", ["3"], False),
        ("1", ["3"], False),
        ("What is 6 - 3?", ["3"], False),
        ("What is 40 - 20?", ["20"], False),
        ("6 - 3 = 3", ["3"], True),
        ("6 - 3 is 3", ["3"], True),
        ("3 + 3 = 6", ["3"], False),
        # numbers
        ("85", ["85"], True),
        ("The answer is 85.", ["85"], True),
        ("37 + 48 = 85", ["85"], True),
        ("12 * 7 = 84, so 84", ["84"], True),
        ("37 + 48 = 85, so the answer is 86", ["85"], False),
        ("85, not 86", ["85"], True),
        ("not 85 but 86", ["85"], False),
        ("85 or 86", ["85"], False),
        ("850", ["85"], False),
        ("8.5", ["85"], False),
        ("1,234", ["1234"], True),
        ("1234", ["1,234"], True),
        ("3.0", ["3"], True),
        ("-3", ["-3"], True),
        ("3", ["-3"], False),
        ("-3", ["3"], False),
        ("twelve", ["12"], True),
        ("12", ["twelve"], True),
        ("eighty-five apples", ["85"], True),
        # names
        ("Paris, France", ["Paris"], True),
        ("Paris", ["Paris"], True),
        ("Parisian", ["Paris"], False),
        ("The capital of Australia is Sydney", ["Canberra"], False),
        ("The capital of Australia is Canberra", ["Canberra"], True),
        ("Canberra, not Sydney", ["Canberra"], True),
        ("not Sydney but Canberra", ["Canberra"], True),
        ("not Canberra", ["Canberra"], False),
        ("It isn't Canberra", ["Canberra"], False),
        ("Sydney or Canberra", ["Canberra"], False),
        ("Aluminium or Aluminum", ["Aluminium", "Aluminum"], True),
        ("Aluminum", ["Aluminium", "Aluminum"], True),
        ("Bogota", ["Bogotá"], True),
        ("Port au Prince", ["Port-au-Prince"], True),
        ("Delhi", ["New Delhi"], False),
        ("No", ["No"], True),  # nobelium's symbol is also a negation word
        ("The symbol is No", ["No"], True),
        ("Iron, atomic number 26", ["Iron"], True),  # numbers do not conflict with a name
        # nothing to judge
        (None, ["Paris"], False),
        ("", ["Paris"], False),
        ("...", ["Paris"], False),
        ("NO ANSWER", ["Paris"], False),
    ],
)
def test_judge(span, answers, expected):
    assert judge(span, answers) is expected, judge_verdict(span, answers)


def test_verdict_explains():
    v = judge_verdict("6 - 3 is 1", ["3"])
    assert not v.correct and v.reason == "conflicting number in span" and v.matched is None
    v = judge_verdict("Paris, France", ["Lyon", "Paris"])
    assert v.correct and v.matched == "Paris"
    assert judge_verdict("not Paris", ["Paris"]).reason == "gold answer negated"


@pytest.mark.parametrize("answers", [[], "Paris", ["!!!", "the"]])
def test_bad_answers_are_rejected(answers):
    with pytest.raises(InvalidInputError, match="answer"):
        judge("Paris", answers)


def test_judge_agreement_with_hand_labels(record_property):
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 60
    labels = [r["human_label"] for r in rows]
    assert 0.3 < sum(labels) / len(labels) < 0.7, "keep the sample balanced"
    wrong = [r for r in rows if judge(r["span_text"], r["answers"]) != r["human_label"]]
    agreement = 1 - len(wrong) / len(rows)
    record_property("judge_agreement", agreement)
    print(f"\njudge agreement with hand labels: {agreement:.3f} ({len(rows) - len(wrong)}/{len(rows)})")
    for r in wrong:
        print(f"  disagrees: {r['span_text']!r} vs {r['answers']} (human: {r['human_label']}, {r['note']})")
    assert agreement >= 0.95, wrong
