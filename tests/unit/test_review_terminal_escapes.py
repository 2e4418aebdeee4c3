"""Issue 11 item 5: record text never reaches the terminal raw. Control characters from
questions, answers, tokens, notes, tags and metadata are printed as repr-style escapes, in
plain mode and in both colour modes, while the colour codes the views emit keep working."""

from __future__ import annotations

import json
import re

import pytest

from spill_guard.review import ReviewRecord
from spill_guard.review.html_report import render_html
from spill_guard.review.terminal import heatmap, json_for_terminal, printable, render_record, visible

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\rfake\u202eevil\u2028x\x7f\udcff"
SGR = re.compile(r"\x1b\[[0-9;]*m")  # the only escape sequences the views may emit
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")


def hostile_record() -> ReviewRecord:
    return ReviewRecord(
        id="id" + HOSTILE, created_at="2026" + HOSTILE, question="q" + HOSTILE, context="c" + HOSTILE,
        answer="a" + HOSTILE, original_answer="o" + HOSTILE, action="flagged", flagged=True, score=1.0,
        threshold=0.5, spec="s" + HOSTILE, locator="l" + HOSTILE, model="m" + HOSTILE,
        span={"start": 0, "end": 1, "text": HOSTILE, "token_start": 0, "token_end": 1},
        tokens=["\x1b[2J", "\x07", HOSTILE], token_scores=[0.1, None, 0.9],
        attempts=[{"answer": HOSTILE, "score": "not a number", "flagged": True, "strategy": ["odd"]},
                  {"answer": "b", "score": 0.2, "flagged": False, "strategy": HOSTILE}],
        tags=["t" + HOSTILE], metadata={"k" + HOSTILE: "v" + HOSTILE}, label="incorrect",
        label_note="n" + HOSTILE, labelled_at="2026" + HOSTILE,
    )


@pytest.mark.parametrize("mode", ["none", "256", "truecolor"])
def test_show_printed_control_characters_from_the_record_raw(mode):
    out = render_record(hostile_record(), mode=mode)
    assert UNSAFE.search(SGR.sub("", out)) is None, repr(UNSAFE.search(SGR.sub("", out)))
    assert "\x1b" not in SGR.sub("", out)  # every ESC left belongs to a colour code of ours
    assert "\\x1b]0;pwned\\x07" in out and "\\u202e" in out and "\\udcff" in out and "\\r" in out
    if mode == "none":
        assert "\x1b" not in out
    else:
        assert SGR.search(out) and "\x1b[4m" in out  # colour and the span underline still work


def test_printable_leaves_ordinary_text_in_any_script_alone():
    text = "Paris — 東京 «ok» café 👩‍👩‍👧 \u00a0x"
    assert printable(text) == text
    assert printable("a\nb\tc") == "a\\nb\\tc"


def test_tokens_are_escaped_in_the_heatmap_in_every_mode():
    for mode in ("none", "256", "truecolor"):
        out = heatmap(["\x1b[2J", "ok\u202e"], [0.0, 1.0], mode=mode)
        assert "\x1b[2J" not in out and "\u202e" not in out and "\\x1b[2J" in out
    assert visible("\u202e") == "\\u202e"


def test_json_for_the_terminal_is_escaped_and_still_the_same_data():
    data = hostile_record().model_dump()
    text = json_for_terminal(json.dumps(data, ensure_ascii=False, indent=2))
    assert UNSAFE.search(text) is None
    assert json.loads(text) == data


def test_html_report_neutralises_control_characters_and_lone_surrogates():
    page = render_html([hostile_record()])
    assert UNSAFE.search(page) is None and "\x1b" not in page
    page.encode("utf-8")  # a lone surrogate used to make write_html fail with UnicodeEncodeError
