"""``spill-guard demo`` (the README's main job): scripted session, chat mode, its review log."""

from __future__ import annotations

import io

import pytest

from spill_guard.cli.demo import QUESTIONS
from spill_guard.cli.main import main
from spill_guard.review import open_log

pytestmark = pytest.mark.model


def test_scripted_demo_prints_verdicts_and_writes_the_log(spill_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("spill_guard.cli.common.load_spill_model", lambda args, **kw: spill_model)
    monkeypatch.setattr("spill_guard.cli.demo.load_spill_model", lambda args, **kw: spill_model)
    log = tmp_path / "demo.jsonl"
    assert main(["demo", "--log", str(log), "--max-new-tokens", "24"]) == 0
    out = capsys.readouterr().out
    assert "calibration:packaged:smollm2-135m-instruct" in out
    assert out.count("Q: ") == len(QUESTIONS)
    assert "Summary: without the guard" in out and "ABSTAINED" in out and "PASSED" in out
    with open_log(log) as sink:
        records = sink.records()
    assert len(records) == len(QUESTIONS)
    assert {r.question for r in records} == {q.question for q in QUESTIONS}
    assert all(r.tags == ["demo"] and r.scored is not None for r in records)
    # The review commands read the same log.
    assert main(["review", "list", "--log", str(log)]) == 0
    assert "What is the capital of France?" in capsys.readouterr().out


def test_chat_mode_answers_until_an_empty_line(spill_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("spill_guard.cli.demo.load_spill_model", lambda args, **kw: spill_model)
    monkeypatch.setattr("sys.stdin", io.StringIO("What is the capital of France?\n\nnever asked\n"))
    log = tmp_path / "chat.sqlite"
    assert main(["demo", "--chat", "--log", str(log), "--policy", "flag", "--max-new-tokens", "16"]) == 0
    out = capsys.readouterr().out
    assert "bot> The capital of France is Paris." in out
    with open_log(log) as sink:
        [record] = sink.records()
    assert record.tags == ["demo", "chat"] and record.action in ("passed", "flagged")


def test_demo_rejects_a_missing_calibration_file(spill_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("spill_guard.cli.demo.load_spill_model", lambda args, **kw: spill_model)
    assert main(["demo", "--calibration", str(tmp_path / "nope.json"), "--log", str(tmp_path / "l.jsonl")]) == 2
    assert "nope.json" in capsys.readouterr().err
