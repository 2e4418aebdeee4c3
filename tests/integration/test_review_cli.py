"""`spill-guard review` end to end through cli.main.main, on logs built from hand-made records."""

from __future__ import annotations

import csv
import json

import pytest

from spill_guard.cli.main import main
from spill_guard.review import ReviewRecord, open_log


def _record(i: int, **kw) -> ReviewRecord:
    base = dict(
        id=f"{i:02d}" + "ab" * 15, created_at=f"2026-01-0{i + 1}T10:00:00.000000+00:00",
        question=f"Question number {i}: <script>x</script>", answer=f"Answer {i}", original_answer=f"Answer {i}",
        action=["passed", "flagged", "abstained"][i % 3], flagged=i % 3 != 0, score=0.5 * i, threshold=0.75,
        spec="spilled_energy:mean", tokens=["Answer", f" {i}"], token_scores=[0.1, 0.2 * i], model="tiny",
        tags=["t"],
    )
    base.update(kw)
    return ReviewRecord(**base)


@pytest.fixture(params=[".jsonl", ".sqlite"])
def log_path(request, tmp_path, monkeypatch):
    monkeypatch.delenv("SPILL_GUARD_LOG", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    path = tmp_path / f"guard{request.param}"
    with open_log(path) as sink:
        for i in range(4):
            sink.write(_record(i, question="=HYPERLINK(\"x\")" if i == 3 else f"Question number {i}: <script>x</script>"))
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_with_filters(log_path, capsys):
    code, out, _ = run(capsys, "review", "list", "--log", str(log_path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["id", "time", "(UTC)"] and lines[-1] == "4 record(s)"
    assert lines[2].startswith("01ababab  2026-01-02 10:00:00  flagged") and "0.500/0.750" in lines[2]
    assert run(capsys, "review", "list", "--log", str(log_path), "--flagged")[1].splitlines()[-1] == "2 record(s)"
    _, out, _ = run(capsys, "review", "list", "--log", str(log_path), "--action", "abstained")
    assert "02ababab" in out and "01ababab" not in out
    _, out, _ = run(capsys, "review", "list", "--log", str(log_path), "--limit", "1")
    assert "03ababab" in out and out.splitlines()[-1] == "1 record(s)"
    run(capsys, "review", "label", "--log", str(log_path), "00", "correct")
    _, out, _ = run(capsys, "review", "list", "--log", str(log_path), "--unlabelled")
    assert "00ababab" not in out and out.splitlines()[-1] == "3 record(s)"
    _, out, _ = run(capsys, "review", "list", "--log", str(log_path), "--flagged", "--action", "passed")
    assert out.strip() == "no matching records"


def test_log_from_environment(log_path, capsys, monkeypatch):
    monkeypatch.setenv("SPILL_GUARD_LOG", str(log_path))
    assert run(capsys, "review", "list")[1].splitlines()[-1] == "4 record(s)"


def test_show_prints_the_record_and_a_plain_heatmap(log_path, capsys):
    code, out, _ = run(capsys, "review", "show", "--log", str(log_path), "01")
    assert code == 0
    assert "id        01" in out and "score 0.5000 ≤ threshold 0.7500" in out
    assert "[Answer|+0.10] [ 1|+0.20]" in out and "\x1b[" not in out  # not a TTY: plain mode
    code, out, _ = run(capsys, "review", "show", "--log", str(log_path), "01", "--json")
    assert json.loads(out)["id"].startswith("01")


def test_label_then_latest_label_wins(log_path, capsys):
    code, out, _ = run(capsys, "review", "label", "--log", str(log_path), "02", "incorrect", "--note", "made up")
    assert code == 0 and out.strip().endswith("incorrect (made up)")
    run(capsys, "review", "label", "--log", str(log_path), "02ab", "correct")
    with open_log(log_path) as sink:
        assert [(r.id[:2], r.label) for r in sink.labelled()] == [("02", "correct")]


def test_export_jsonl_and_csv(log_path, capsys, tmp_path):
    main(["review", "label", "--log", str(log_path), "03", "incorrect", "--note", "x"])
    out_jsonl = tmp_path / "out.jsonl"
    assert run(capsys, "review", "export", "--log", str(log_path), "--format", "jsonl", "-o", str(out_jsonl))[0] == 0
    rows = [ReviewRecord.from_json(line) for line in out_jsonl.read_text().splitlines()]
    assert len(rows) == 4 and rows[3].label == "incorrect"
    assert all("event" not in json.loads(line) for line in out_jsonl.read_text().splitlines())  # a clean snapshot

    out_csv = tmp_path / "out.csv"
    run(capsys, "review", "export", "--log", str(log_path), "--format", "csv", "-o", str(out_csv), "--labelled-only")
    [row] = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert row["id"].startswith("03") and row["label"] == "incorrect" and row["score"] == "1.5"
    assert row["question"] == "'=HYPERLINK(\"x\")"  # formula neutralised for spreadsheets

    _, out, _ = run(capsys, "review", "export", "--log", str(log_path), "--format", "jsonl", "-o", "-")
    assert len(out.splitlines()) == 4


def test_html_report(log_path, capsys, tmp_path):
    page = tmp_path / "report.html"
    code, _, err = run(capsys, "review", "html", "--log", str(log_path), "-o", str(page), "--flagged")
    assert code == 0 and "wrote 2 record(s)" in err
    text = page.read_text(encoding="utf-8")
    assert text.count('<section class="card') == 2 and "<script>" not in text and "&lt;script&gt;" in text


@pytest.mark.parametrize("argv,message", [
    (["review", "show", "zz"], "no record with id or id prefix 'zz'"),
    (["review", "show", "0"], "matches several records"),
    (["review", "label", "zz", "correct"], "review list"),
    (["review", "list", "--limit", "0"], "--limit 0"),
    (["review", "export", "-o", "/nonexistent-dir/x.csv", "--format", "csv"], "cannot write"),
])
def test_errors_exit_2_with_a_message(log_path, capsys, argv, message):
    code, _, err = run(capsys, *argv, "--log", str(log_path))
    assert code == 2 and message in err


def test_missing_or_unnamed_log_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("SPILL_GUARD_LOG", raising=False)
    code, _, err = run(capsys, "review", "list")
    assert code == 2 and "--log PATH or set SPILL_GUARD_LOG" in err
    code, _, err = run(capsys, "review", "list", "--log", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "does not exist" in err
    (tmp_path / "x.txt").write_text("")
    code, _, err = run(capsys, "review", "list", "--log", str(tmp_path / "x.txt"))
    assert code == 2 and "*.jsonl" in err
    code, _, err = run(capsys, "review")
    assert code == 2 and "SUBCOMMAND" in err
