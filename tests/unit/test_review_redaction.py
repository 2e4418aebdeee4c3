"""redact_patterns: text fields, token texts split across tokens, the scored payload policies."""

from __future__ import annotations

import re

import pytest

from spill_guard.errors import InvalidParameterError
from spill_guard.review import EMAIL_PATTERN, PHONE_PATTERN, ReviewRecord, redact_patterns
from spill_guard.review.redaction import redact_token_texts


def pii_record() -> ReviewRecord:
    return ReviewRecord(
        question="I am bob@example.org, call +33 1 23 45 67 89", context="ctx bob@example.org",
        answer="Write to bob@example.org.", original_answer="Write to bob@example.org.", action="flagged",
        flagged=True, score=1.0, spec="spilled_energy:mean",
        span={"start": 9, "end": 24, "text": "bob@example.org", "token_start": 2, "token_end": 6},
        tokens=["Write", " to", " bob", "@", "example", ".org", "."], token_scores=[0.0] * 7,
        attempts=[{"answer": "bob@example.org", "score": 1.0, "flagged": True, "strategy": "greedy"}],
        tags=["user:bob@example.org"], metadata={"who": {"mail": "bob@example.org"}, "n": 3},
        label_note="asked by 555-123-4567",
        scored={"prompt": "<user> I am bob@example.org", "prompt_ids": [1, 2, 3], "answer": "Write to bob@example.org.",
                "answer_ids": [7, 8], "tokens": [{"id": 7, "text": "Write to"}, {"id": 8, "text": " bob@example.org."}],
                "trace": {"token_ids": [7, 8], "chosen_logit": [1.0, 2.0]}},
    )


def test_every_text_field_is_redacted():
    r = redact_patterns()(pii_record())
    dump = r.model_dump_json()
    assert "bob@" not in dump and "45 67" not in dump and "-4567" not in dump  # a bare 4567 can be a timestamp's
    assert r.question == "I am [REDACTED], call [REDACTED]"
    assert r.tokens == ["Write", " to", " [REDACTED]", "", "", "", "."]  # one score per token kept
    assert r.span["text"] == "[REDACTED]" and r.metadata == {"who": {"mail": "[REDACTED]"}, "n": 3}
    assert r.label_note == "asked by [REDACTED]"


def test_scored_policies():
    kept_numbers = redact_patterns(scored="drop_prompt")(pii_record()).scored
    assert kept_numbers["prompt"] == "" and kept_numbers["prompt_ids"] == []
    assert kept_numbers["answer"] == "Write to [REDACTED]."
    assert [t["text"] for t in kept_numbers["tokens"]] == ["Write to", " [REDACTED]."]
    assert kept_numbers["trace"] == {"token_ids": [7, 8], "chosen_logit": [1.0, 2.0]}  # re-scoring still possible
    assert redact_patterns(scored="drop")(pii_record()).scored is None
    assert redact_patterns(scored="keep")(pii_record()).scored == pii_record().scored
    with pytest.raises(InvalidParameterError, match="'all'"):
        redact_patterns(scored="all")


def test_custom_patterns_and_replacement():
    hook = redact_patterns([r"Paris", re.compile(r"\bFrance\b")], replacement="█")
    r = redact_patterns([r"secret-\d+"], "<x>")(ReviewRecord(
        question="what is secret-42?", answer="a", original_answer="a", action="passed", flagged=False,
        score=None, spec="s"))
    assert r.question == "what is <x>?"
    assert redact_token_texts(["Par", "is", " is in", " France"], re.compile("Paris|France"), "█") == [
        "█", "", " is in", " █"]
    assert hook is not None


def test_bad_patterns_are_clear_errors():
    with pytest.raises(InvalidParameterError, match="not a valid regex"):
        redact_patterns(["("])
    with pytest.raises(InvalidParameterError, match="empty string"):
        redact_patterns([r"\d*"])
    with pytest.raises(InvalidParameterError, match="at least one pattern"):
        redact_patterns([])


@pytest.mark.parametrize("text", ["jane.doe+tag@mail.example.co.uk"])
def test_email_pattern(text):
    assert re.fullmatch(EMAIL_PATTERN, text)


@pytest.mark.parametrize("text,hit", [
    ("+33 1 23 45 67 89", True), ("(555) 123-4567", True), ("555.123.4567", True), ("+1-202-555-0143", True),
    ("2024-01-15", False), ("1234567", False), ("3.14159", False), ("10.0.0.1", False), ("12 34", False),
])
def test_phone_pattern_leaves_ordinary_numbers_alone(text, hit):
    assert bool(re.search(PHONE_PATTERN, text)) is hit
