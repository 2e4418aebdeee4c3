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


# -- issue 11: hardening --------------------------------------------------------------------

def _variants(log_path, tmp_path, monkeypatch) -> dict[str, str]:
    """Ways to name the log itself: as given, relative, through a symlink, through a hard link."""
    (tmp_path / "link").symlink_to(log_path)
    hard = tmp_path / "hard"
    hard.hardlink_to(log_path)
    monkeypatch.chdir(tmp_path)
    names = {"same": str(log_path), "relative": f"./{log_path.name}", "symlink": "link", "hardlink": "hard"}
    if log_path.suffix == ".sqlite":
        names["wal"] = f"{log_path}-wal"  # the WAL belongs to the log too
    return names


@pytest.mark.parametrize("command", [["export", "--format", "jsonl"], ["export", "--format", "csv"], ["html"]])
def test_export_or_html_over_its_own_log_destroyed_it(log_path, capsys, tmp_path, monkeypatch, command):
    before = log_path.read_bytes()
    for how, output in _variants(log_path, tmp_path, monkeypatch).items():
        code, _, err = run(capsys, "review", *command, "--log", str(log_path), "-o", output)
        assert code == 2 and "is the review log" in err and "Choose another output path" in err, (how, err)
        assert log_path.read_bytes() == before, how
    with open_log(log_path) as sink:
        assert len(sink.records()) == 4


def test_export_replaced_its_output_in_place_instead_of_atomically(log_path, capsys, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old export\n")
    out.chmod(0o640)
    inode = out.stat().st_ino
    assert run(capsys, "review", "export", "--log", str(log_path), "-o", str(out))[0] == 0
    assert out.stat().st_ino != inode  # a new file renamed over the old one, not the old one truncated
    assert out.stat().st_mode & 0o777 == 0o640 and len(out.read_text().splitlines()) == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_html_on_a_full_disk_left_a_truncated_report(capsys, tmp_path, monkeypatch):
    from tmpfs_support import mounted_tmpfs

    monkeypatch.delenv("SPILL_GUARD_LOG", raising=False)
    log = tmp_path / "guard.jsonl"
    with open_log(log) as sink:
        for i in range(300):
            sink.write(_record(i % 10, id=f"{i:032x}", answer="long answer " * 20))
    with mounted_tmpfs(tmp_path / "small", size="64k") as small:
        page = small / "report.html"
        page.write_text("the previous report\n")
        code, _, err = run(capsys, "review", "html", "--log", str(log), "-o", str(page))
        assert code == 2 and "cannot write" in err and "unchanged" in err
        assert page.read_text() == "the previous report\n"  # not half of the new one
        assert [p.name for p in small.iterdir()] == ["report.html"]


def test_list_and_show_printed_terminal_escapes_raw(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    hostile = "\x1b]0;pwned\x07\x1b[2J\x9b\u202e\udcff"
    log = tmp_path / "guard.sqlite"
    r = _record(1, question="q" + hostile, answer="a" + hostile, original_answer="o" + hostile,
                tokens=["\x1b[31m", hostile], token_scores=[0.1, 0.2], metadata={hostile: hostile})
    with open_log(log) as sink:
        sink.write(r)
        sink.set_label(r.id, "incorrect", note="n" + hostile)
    unsafe = ("\x1b", "\x07", "\x9b", "\u202e", "\udcff")
    for argv in (["list"], ["show", "01"], ["label", "01", "incorrect", "--note", hostile]):
        code, out, _ = run(capsys, "review", *argv, "--log", str(log))
        assert code == 0 and not any(c in out for c in unsafe), (argv, out)
        assert "\\x1b]0;pwned\\x07" in out
    for argv in (["show", "01", "--json"], ["export", "-o", "-"]):
        code, out, _ = run(capsys, "review", *argv, "--log", str(log))
        assert code == 0 and not any(c in out for c in unsafe), argv
        assert json.loads(out.strip())["question"] == "q" + hostile  # escaped, yet the same data


def test_one_bad_line_crashed_list_html_and_export(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPILL_GUARD_LOG", raising=False)
    log = tmp_path / "guard.jsonl"
    with open_log(log) as sink:
        for i in range(3):
            sink.write(_record(i))
    with log.open("a") as f:
        f.write('{"event":"label","id":[1]}\n{"question": 5}\n')
    for argv in (["list"], ["html", "-o", str(tmp_path / "r.html")], ["export", "-o", str(tmp_path / "e.csv"),
                                                                       "--format", "csv"]):
        code, out, err = run(capsys, "review", *argv, "--log", str(log))
        assert code == 0, (argv, err)
        assert f"warning: {log}:4: skipped a malformed label event" in err
        assert f"warning: {log}:5: skipped a line that is not a valid record" in err
    assert len(list(csv.DictReader((tmp_path / "e.csv").open(encoding="utf-8")))) == 3


def test_label_note_typed_in_the_cli_reached_disk_unredacted(log_path, capsys):
    code, out, _ = run(capsys, "review", "label", "--log", str(log_path), "01", "incorrect",
                       "--note", "asked by bob@example.org")
    assert code == 0 and out.strip().endswith("incorrect (asked by [REDACTED])")
    files = [log_path] + [log_path.with_name(log_path.name + "-wal")]
    assert all(b"bob@example" not in f.read_bytes() for f in files if f.exists())
    code, out, _ = run(capsys, "review", "label", "--log", str(log_path), "01", "correct",
                       "--note", "mail amy@example.org", "--keep-pii")
    assert code == 0 and out.strip().endswith("(mail amy@example.org)")


@pytest.mark.parametrize("name,content,message", [
    ("garbage.sqlite", b"\x00\x01 not a database" * 50, "is not a SQLite database"),
    ("jsonl.db", b'{"question": "q"}\n', "rename it to *.jsonl"),
])
def test_a_log_of_the_wrong_format_is_exit_2_with_what_to_do(tmp_path, capsys, name, content, message):
    (tmp_path / name).write_bytes(content)
    code, _, err = run(capsys, "review", "list", "--log", str(tmp_path / name))
    assert code == 2 and message in err and name in err
    assert (tmp_path / name).read_bytes() == content


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_of_a_lone_surrogate_crashed_with_unicode_encode_error(tmp_path, capsys, monkeypatch, fmt):
    monkeypatch.delenv("SPILL_GUARD_LOG", raising=False)
    log = tmp_path / "guard.jsonl"
    with open_log(log) as sink:
        sink.write(_record(1, question="caf\udce9", metadata={"k": "\udcff"}))
    out = tmp_path / f"out.{fmt}"
    code, _, err = run(capsys, "review", "export", "--log", str(log), "--format", fmt, "-o", str(out))
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    if fmt == "jsonl":
        assert ReviewRecord.from_json(text).question == "caf\udce9"  # exact
    else:
        assert "caf\\udce9" in text  # shown as its escape
