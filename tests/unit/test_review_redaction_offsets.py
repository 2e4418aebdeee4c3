"""Redacting a record's scored answer keeps its token offsets on its (redacted) text.

Before: the answer text was redacted but each token kept its old ``start``/``end``, so
``text != answer[start:end]`` and calibration's ``full`` span mapped to the wrong tokens
(or past the end of the text) without a word.
"""

from __future__ import annotations

import pytest

from spill_guard.report import ScoredAnswer
from spill_guard.review import ReviewRecord, redact_patterns
from spill_guard.review.redaction import redact_with_offsets
from spill_guard.spans import make_locator

pytestmark = pytest.mark.model


@pytest.mark.parametrize("answer", [
    "Write to help@example.com or call 555-123-4567 today.",
    "Mail bob@example.org",  # the span ends inside the redacted text
    "bob@example.org is the address.",  # ... or starts inside it
])
def test_a_redacted_scored_answer_keeps_its_span_on_the_same_tokens(spill_model, answer):
    scored = spill_model.score_answer("How do I reach support?", answer)
    record = ReviewRecord(question="How do I reach support?", answer=answer, original_answer=answer, action="passed",
                          flagged=False, score=None, spec="spilled_energy:mean", scored=scored.to_record())
    back = ScoredAnswer.from_record(redact_patterns()(record).scored)
    assert "@" not in back.answer and "[REDACTED]" in back.answer
    assert all(back.answer[t.start:t.end] == t.text for t in back.tokens)
    assert back.text_range() == scored.text_range()
    assert back.score() == scored.score()


def test_offsets_move_with_the_replacement():
    import re

    answer = "ab XYZW cd"
    tokens = [{"text": t, "start": s, "end": e} for t, s, e in
              (("ab", 0, 2), (" X", 2, 4), ("YZ", 4, 6), ("W", 6, 7), (" cd", 7, 10))]
    redacted, moved = redact_with_offsets(answer, tokens, re.compile("XYZW"), "[R]")
    assert redacted == "ab [R] cd"
    assert [t["text"] for t in moved] == ["ab", " [", "R", "]", " cd"]
    assert all(redacted[t["start"]:t["end"]] == t["text"] for t in moved)
    assert make_locator("full").locate(redacted).text == "ab [R] cd"
