"""Terminal heatmap (colour and plain) and the static HTML report."""

from __future__ import annotations

import io
import re

import pytest

from spill_guard.errors import SpillGuardError
from spill_guard.review import ReviewRecord
from spill_guard.review.colors import risk_rgb, value_range
from spill_guard.review.html_report import render_html, write_html
from spill_guard.review.terminal import color_mode, heatmap, legend, render_record

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(**kw) -> ReviewRecord:
    base = dict(question="Who wrote <script>alert(1)</script>?", answer="Bram \"Stoker\" & co", original_answer="Bram",
                action="flagged", flagged=True, score=1.2, threshold=1.0, spec="spilled_energy:mean",
                tokens=["Bram", " <b>", "\n", ""], token_scores=[-1.0, 3.0, 1.0, None],
                span={"start": 0, "end": 4, "text": "Bram", "token_start": 0, "token_end": 1})
    base.update(kw)
    return ReviewRecord(**base)


def test_colour_mode_follows_no_color_tty_and_colorterm():
    assert color_mode(_Tty(), env={}) == "256"
    assert color_mode(_Tty(), env={"COLORTERM": "truecolor"}) == "truecolor"
    assert color_mode(_Tty(), env={"NO_COLOR": "1", "COLORTERM": "truecolor"}) == "none"
    assert color_mode(_Tty(), env={"NO_COLOR": ""}) == "256"  # empty NO_COLOR does not count (no-color.org)
    assert color_mode(io.StringIO(), env={}) == "none"


def test_plain_heatmap_brackets_every_token_with_its_value():
    out = heatmap(["The", " cat", "\n", ""], [0.5, -1.25, None, 2.0])
    assert out == "[The|+0.50] [ cat|-1.25] [↵|n/a] [∅|+2.00]"
    assert "\x1b" not in out
    assert "higher = riskier" in legend(-1.0, 2.0) and "-1.00 .. +2.00" in legend(-1.0, 2.0)


def test_colour_heatmap_goes_blue_to_red_and_keeps_the_text():
    tokens, scores = ["lo", "mid", "hi", "none"], [0.0, 1.0, 2.0, None]
    for mode in ("256", "truecolor"):
        out = heatmap(tokens, scores, mode=mode, underline=(0, 1))
        assert ANSI.sub("", out) == "lomidhinone"
        assert out.count("\x1b[0m") == 4 and "\x1b[4m" in out
    true = heatmap(tokens, scores, mode="truecolor")
    assert "48;2;59;76;192" in true and "48;2;180;4;38" in true  # blue for the min, red for the max
    assert ANSI.sub("", legend(0, 2, mode="256")).startswith("low +0.00")


def test_scale_can_be_fixed_and_is_clipped():
    assert value_range([1.0, None, 3.0]) == (1.0, 3.0)
    assert value_range([1.0, 3.0], vmin=0.0, vmax=10.0) == (0.0, 10.0)
    assert risk_rgb(99.0, 0.0, 1.0) == risk_rgb(1.0, 0.0, 1.0) == (180, 4, 38)
    assert risk_rgb(5.0, 5.0, 5.0) == (221, 221, 221)  # empty range: neutral, no division by zero


def test_misaligned_heatmap_is_a_spill_guard_error():
    with pytest.raises(SpillGuardError, match="2 tokens but 1 scores"):
        heatmap(["a", "b"], [1.0])


def test_render_record_shows_everything_a_reviewer_needs():
    text = render_record(record(label="incorrect", label_note="Bram Stoker wrote it", labelled_at="t",
                                attempts=[{"answer": "Bram", "score": 1.2, "flagged": True, "strategy": "greedy"},
                                          {"answer": "B", "score": 0.4, "flagged": False, "strategy": "resample@0.8"}]))
    for expected in ("score 1.2000 > threshold 1.0000", "label     incorrect — Bram Stoker wrote it",
                     "model's answer (scored): Bram", "resample@0.8", "[Bram|-1.00]", "tokens 0-1"):
        assert expected in text
    assert "score n/a (no span found)" in render_record(record(score=None))


def test_html_report_is_self_contained_and_escapes_everything(tmp_path):
    records = [record(), record(action="passed", flagged=False, score=0.2, label="correct", question="ok?")]
    page = render_html(records, title="<t>")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;" in page and "&quot;Stoker&quot; &amp; co" in page and "&lt;t&gt;" in page
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page  # no JS, no fetches
    assert 'title="Δ = 3.0000"' in page and 'title="Δ undefined"' in page
    assert "background:#b40426" in page  # the riskiest token is red
    summary = re.search(r'<table class="summary">.*?</table>', page).group(0)
    assert re.findall(r"<td>(\d+)</td>", summary) == ["2", "1", "1", "0", "0", "1", "1", "0", "1"]
    path = write_html(records, tmp_path / "sub" / "r.html")
    assert path.read_text(encoding="utf-8") == render_html(records)
    assert "No records." in render_html([])


def test_heatmap_shows_a_not_computed_delta_as_na_not_nan():
    # The guard leaves a final textless stop token's Δ as NaN (final_step="auto"); the demo printed "+nan".
    assert heatmap(["Paris", "<|im_end|>"], [1.5, float("nan")]) == "[Paris|+1.50] [<|im_end|>|n/a]"
    coloured = heatmap(["Paris", "<|im_end|>"], [1.5, float("nan")], mode="256")
    assert "nan" not in coloured and "<|im_end|>" in coloured
