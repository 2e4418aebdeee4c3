"""Both sinks: round trip, labels (latest wins), id prefixes, open_log, labelled_records, redaction hook."""

from __future__ import annotations

import json
import sqlite3
import warnings

import pytest

from spill_guard.errors import SpillGuardError
from spill_guard.review import (
    AmbiguousRecordIdError,
    InvalidLabelError,
    JsonlSink,
    RecordNotFoundError,
    ReviewLogWarning,
    ReviewRecord,
    SqliteSink,
    UnsupportedLogFormatError,
    labelled_records,
    open_log,
    redact_patterns,
)

SUFFIXES = [".jsonl", ".sqlite", ".db", ".sqlite3"]


def record(question: str = "What is the capital of France?", **kw) -> ReviewRecord:
    base = dict(question=question, answer="Paris.", original_answer="Paris.", action="passed", flagged=False,
                score=0.25, threshold=0.5, spec="spilled_energy:mean", tokens=["Paris", "."],
                token_scores=[0.1, 0.4], model="tiny")
    base.update(kw)
    return ReviewRecord(**base)


@pytest.fixture(params=SUFFIXES)
def sink(request, tmp_path):
    with open_log(tmp_path / f"log{request.param}") as s:
        yield s


def test_open_log_picks_the_sink_by_suffix(tmp_path):
    assert isinstance(open_log(tmp_path / "a.jsonl"), JsonlSink)
    for suffix in (".sqlite", ".db", ".sqlite3", ".DB"):
        assert isinstance(open_log(tmp_path / f"a{suffix}"), SqliteSink)
    with pytest.raises(UnsupportedLogFormatError, match=r"'\.json'.*\*\.jsonl") as info:
        open_log(tmp_path / "a.json")
    assert isinstance(info.value, SpillGuardError)
    with pytest.raises(UnsupportedLogFormatError, match=r"\(none\)"):
        open_log(tmp_path / "log")


def test_missing_log_reads_as_empty_and_is_created_on_first_write(tmp_path, sink):
    assert sink.records() == []
    assert not sink.path.exists()
    r = record()
    assert sink.write(r) == r.id
    assert sink.path.exists()
    assert sink.records() == [r]


def test_records_round_trip_exactly_and_keep_write_order(sink):
    written = [record(f"q{i}", score=float(i), action="flagged", flagged=True, metadata={"i": i, "nested": [1, "x"]},
                      context="ctx", tags=["a", "b"]) for i in range(5)]
    for r in written:
        sink.write(r)
    assert sink.records() == written


def test_rewriting_an_id_replaces_the_record(sink):
    r = record()
    sink.write(r)
    sink.write(record("other"))
    sink.set_label(r.id, "correct")
    changed = r.model_copy(update={"answer": "Lyon."})
    sink.write(changed)
    assert [x.question for x in sink.records()] == ["other", r.question]
    assert sink.get(r.id) == changed  # the later write wins, label included


def test_labels_round_trip_and_the_latest_wins(sink):
    a, b = record("a"), record("b")
    sink.write(a)
    sink.write(b)
    labelled = sink.set_label(a.id, "incorrect", note="it is Paris")
    assert (labelled.label, labelled.label_note) == ("incorrect", "it is Paris")
    assert labelled.labelled_at is not None
    sink.set_label(a.id[:6], "correct")
    got = sink.get(a.id)
    assert (got.label, got.label_note) == ("correct", None)
    assert sink.get(b.id).label is None
    assert [r.id for r in sink.labelled()] == [a.id]
    assert [r.id for r in labelled_records(sink)] == [a.id]
    assert [r.label for r in labelled_records(sink.path)] == ["correct"]  # by path too


def test_bad_label_is_a_clear_error(sink):
    r = record()
    sink.write(r)
    with pytest.raises(InvalidLabelError, match=r"'wrong'.*'correct' or 'incorrect'"):
        sink.set_label(r.id, "wrong")


def test_prefix_lookup_unknown_and_ambiguous_ids(sink):
    sink.write(record("one", id="abc111"))
    sink.write(record("two", id="abc222"))
    assert sink.get("abc1").question == "one"
    assert sink.get("abc222").question == "two"
    with pytest.raises(AmbiguousRecordIdError, match=r"'abc'.*more characters"):
        sink.get("abc")
    with pytest.raises(RecordNotFoundError, match=r"'zzz'.*review list"):
        sink.get("zzz")
    with pytest.raises(RecordNotFoundError):
        sink.set_label("zzz", "correct")
    with pytest.raises(RecordNotFoundError, match="empty"):
        sink.get("  ")
    sink.write(record("exact", id="abc"))
    assert sink.get("abc").question == "exact"  # an exact id wins over longer ids it prefixes


def test_redaction_hook_runs_before_the_record_reaches_disk(tmp_path):
    for suffix in (".jsonl", ".sqlite"):
        path = tmp_path / f"r{suffix}"
        with open_log(path, redact=redact_patterns()) as s:
            s.write(record("Mail me at jane.doe@example.com", answer="Call 555-123-4567.",
                           original_answer="Call 555-123-4567.", tokens=["Call", " 555", "-123", "-4567", "."],
                           token_scores=[0.1, 0.2, 0.3, 0.4, 0.5]))
            [stored] = s.records()
        assert stored.question == "Mail me at [REDACTED]"
        assert stored.answer == "Call [REDACTED]."
        assert stored.tokens == ["Call", " [REDACTED]", "", "", "."]
        assert b"jane.doe" not in path.read_bytes() and b"-4567" not in path.read_bytes()  # a bare 4567 can be a timestamp's


def test_write_rejects_anything_but_a_record(sink):
    with pytest.raises(SpillGuardError, match="ReviewRecord"):
        sink.write({"question": "q"})


def test_jsonl_is_strict_json_with_label_events_appended(tmp_path):
    path = tmp_path / "log.jsonl"
    with JsonlSink(path) as s:
        r = record(score=float("nan"), token_scores=[float("inf"), -1.0])
        s.write(r)
        s.set_label(r.id, "incorrect")
        before = path.read_bytes().split(b"\n")[0]
        s.set_label(r.id, "correct")
    lines = path.read_text().splitlines()
    assert path.read_bytes().split(b"\n")[0] == before  # never rewritten
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    objs = [json.loads(line) for line in lines]
    assert objs[0]["score"] is None and objs[0]["token_scores"] == [None, -1.0]
    assert [o.get("event") for o in objs] == [None, "label", "label"]


def test_jsonl_skips_garbage_lines_with_a_warning(tmp_path):
    path = tmp_path / "log.jsonl"
    good = record()
    path.write_text(good.to_json() + "\n" + "not json\n" + "[1,2]\n" + '{"question": 1}\n'
                    + json.dumps({"event": "label", "id": "nope", "label": "correct"}) + "\n"
                    + json.dumps({"event": "compaction"}) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert JsonlSink(path).records() == [good]
    messages = [str(w.message) for w in caught if issubclass(w.category, ReviewLogWarning)]
    assert len(messages) == 5
    assert any("log.jsonl:2" in m for m in messages) and any("unknown record id 'nope'" in m for m in messages)


def test_sqlite_has_indexed_columns_and_labels_update_them(tmp_path):
    path = tmp_path / "log.sqlite"
    with SqliteSink(path) as s:
        r = record(action="flagged", flagged=True, score=1.5)
        s.write(r)
        s.set_label(r.id, "incorrect", note="n")
        assert s.count() == 1
    conn = sqlite3.connect(path)
    row = conn.execute("SELECT id, action, flagged, score, label, label_note FROM records").fetchone()
    assert row == (r.id, "flagged", 1, 1.5, "incorrect", "n")
    indexes = {r[1] for r in conn.execute("PRAGMA index_list(records)")}
    assert {"records_created_at", "records_action", "records_flagged", "records_label"} <= indexes


def test_closed_sinks_reopen_on_use(sink):
    sink.write(record("a"))
    sink.close()
    sink.write(record("b"))
    assert [r.question for r in sink.records()] == ["a", "b"]
