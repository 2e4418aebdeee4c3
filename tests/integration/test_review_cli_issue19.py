"""Issue 19 item 7: `review list --log <a directory>` said "does not exist"; the HTML report's summary
table had two columns both headed "flagged" (the action and the flag)."""

from __future__ import annotations

import html
import re

import pytest

from spill_guard.cli.main import main
from spill_guard.review import ReviewRecord, open_log


def _record(i: int, action: str, flagged: bool) -> ReviewRecord:
    return ReviewRecord(
        id=f"{i:02d}" + "cd" * 15, created_at=f"2026-01-0{i + 1}T10:00:00.000000+00:00", question=f"Q{i}",
        answer=f"A{i}", original_answer=f"A{i}", action=action, flagged=flagged, score=0.1 * i, threshold=0.25,
        spec="spilled_energy:mean", tokens=["A", f"{i}"], token_scores=[0.1, 0.2], model="tiny",
    )


@pytest.mark.parametrize("command", [["list"], ["show", "00"], ["html", "-o", "report.html"]])
def test_a_directory_as_log_is_named_a_directory_with_what_to_pass(tmp_path, capsys, monkeypatch, command):
    monkeypatch.delenv("SPILL_GUARD_LOG", raising=False)
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "guard.jsonl").write_text("")
    monkeypatch.chdir(tmp_path)
    code = main(["review", *command, "--log", str(folder)])
    err = capsys.readouterr().err
    assert code == 2
    assert "is a directory" in err and "does not exist" not in err, err
    assert "guard.jsonl" in err  # the log files found in it, to pass instead
    assert "Traceback" not in err


def test_an_empty_directory_as_log_says_what_a_log_is(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPILL_GUARD_LOG", raising=False)
    code = main(["review", "list", "--log", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "is a directory" in err and "does not exist" not in err
    assert ".jsonl" in err and ".sqlite" in err


def _summary_table(page: str) -> tuple[list[str], list[str]]:
    table = re.search(r'<table class="summary">(.*?)</table>', page, re.S).group(1)
    heads = [html.unescape(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table)]
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", table)]
    return heads, cells


def test_html_summary_headers_are_distinct_and_the_flag_column_counts_the_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPILL_GUARD_LOG", raising=False)
    log = tmp_path / "guard.jsonl"
    with open_log(log) as sink:  # actions and flags disagree on purpose: an abstained or passed answer can be flagged
        sink.write(_record(0, "passed", False))
        sink.write(_record(1, "flagged", True))
        sink.write(_record(2, "abstained", True))
        sink.write(_record(3, "passed", True))  # a log-only guard: over the threshold, passed through
    page = tmp_path / "report.html"
    assert main(["review", "html", "--log", str(log), "-o", str(page)]) == 0
    heads, cells = _summary_table(page.read_text(encoding="utf-8"))
    assert len(heads) == len(set(heads)) == len(cells), heads
    column = dict(zip(heads, cells))
    assert column["records"] == "4"
    flag_heads = [h for h in heads if "threshold" in h]
    assert len(flag_heads) == 1 and column[flag_heads[0]] == "3"  # risk over the threshold, whatever the action
    action_heads = {h.split(":")[-1].strip(): h for h in heads if h.startswith("action")}
    assert set(action_heads) == {"passed", "flagged", "abstained", "raised"}
    assert [column[action_heads[a]] for a in ("passed", "flagged", "abstained", "raised")] == ["2", "1", "1", "0"]
