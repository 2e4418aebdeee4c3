"""Issue 11 item 4: one bad line or row must not make a log unreadable, and a file of the wrong
format is a clear error before anything touches it."""

from __future__ import annotations

import json
import os
import sqlite3
import warnings

import pytest

from spill_guard.errors import SpillGuardError
from spill_guard.review import (
    JsonlSink,
    NotAReviewLogError,
    ReviewLogError,
    ReviewLogWarning,
    ReviewLogWriteError,
    ReviewRecord,
    SqliteSink,
    open_log,
)


def record(question: str = "q", **kw) -> ReviewRecord:
    base = dict(question=question, answer="a", original_answer="a", action="passed", flagged=False, score=0.1,
                threshold=0.5, spec="s", tokens=["a"], token_scores=[0.1])
    base.update(kw)
    return ReviewRecord(**base)


def read_with_warnings(sink) -> tuple[list[ReviewRecord], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = sink.records()
    assert all(issubclass(w.category, ReviewLogWarning) for w in caught), [str(w.message) for w in caught]
    return records, [str(w.message) for w in caught]


def test_label_event_with_a_list_id_crashed_every_reader(tmp_path):
    good = record()
    path = tmp_path / "log.jsonl"
    lines = [good.to_json(),
             '{"event":"label","id":[1]}',                                              # line 2: TypeError before
             json.dumps({"event": "label", "id": good.id, "label": "correct", "note": 5}),  # wrong-typed note
             json.dumps({"event": "label", "id": good.id, "label": "correct", "labelled_at": ["x"]}),
             json.dumps({"event": ["x"]}),                                              # unhashable event
             json.dumps({**good.model_dump(), "id": "other", "attempts": "nope"})]
    path.write_text("\n".join(lines) + "\n")
    records, messages = read_with_warnings(JsonlSink(path))
    assert records == [good]  # every bad line skipped, labels included
    assert len(messages) == 5
    assert all(f"log.jsonl:{n}" in m for n, m in zip((2, 3, 4, 5, 6), messages))
    assert "malformed label event: id" in messages[0] and "note" in messages[1]


def test_overflowing_number_read_as_infinity_and_crashed_export(tmp_path):
    path = tmp_path / "log.jsonl"
    line = record().to_json().replace('"score":0.1', '"score":1e400').replace('"token_scores":[0.1]',
                                                                             '"token_scores":[-1e999]')
    path.write_text(line + "\n")
    [got] = JsonlSink(path).records()
    assert got.score is None and got.token_scores == [None]
    json.loads(got.to_json())  # export / rewrite no longer fails on allow_nan=False


def test_foreign_json_in_a_sqlite_row_crashed_records(tmp_path):
    path = tmp_path / "log.sqlite"
    good = record("good")
    with SqliteSink(path) as sink:
        sink.write(good)
    conn = sqlite3.connect(path)
    insert = "INSERT INTO records (id, created_at, action, flagged, data, label, label_note) VALUES (?,?,?,?,?,?,?)"
    conn.execute(insert, ("a", "t", "passed", 0, '{"foreign": true}', None, None))
    conn.execute(insert, ("b", "t", "passed", 0, "not json at all", None, None))
    conn.execute(insert, ("c", "t", "passed", 0, 12345, None, None))
    conn.execute(insert, ("d", "t", "passed", 0, b"\xff\xfe\x00", None, None))
    conn.execute(insert, ("e", "t", "passed", 0, record("id differs", id="zzz").to_json(), None, None))
    conn.execute(insert, ("f", "t", "passed", 0, record("bad label", id="f").to_json(), "maybe", None))
    conn.execute(insert, ("g", "t", "passed", 0, record("bad note", id="g").to_json(), "correct", b"\xff"))
    conn.commit()
    conn.close()
    with SqliteSink(path) as sink:
        records, messages = read_with_warnings(sink)
        assert [r.question for r in records] == ["good", "bad label", "bad note"]
        assert records[1].label is None and records[2].label is None  # malformed label columns ignored
        assert len(messages) == 7 and all("rowid" in m for m in messages)
        assert "rowid 2" in messages[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReviewLogWarning)
            assert sink.get(good.id[:6]).question == "good"  # prefix lookups skip bad rows too


def test_many_garbage_lines_are_reported_once_past_the_first_twenty(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(record().to_json().encode() + b"\n" + b"\x00\xff garbage\n" * 100)
    records, messages = read_with_warnings(JsonlSink(path))
    assert len(records) == 1 and len(messages) == 21
    assert "80 more malformed lines or rows skipped (100 in all" in messages[-1]


def test_garbage_sqlite_file_crashed_with_file_is_not_a_database(tmp_path):
    path = tmp_path / "log.sqlite"
    path.write_bytes(os.urandom(4096))
    before = path.read_bytes()
    sink = open_log(path)
    with pytest.raises(NotAReviewLogError, match=r"log\.sqlite is not a SQLite database") as info:
        sink.records()
    assert isinstance(info.value, SpillGuardError)
    with pytest.raises(ReviewLogWriteError, match="is not a SQLite database"):
        sink.write(record())
    assert path.read_bytes() == before  # untouched


def test_jsonl_file_named_db_gets_a_clear_error(tmp_path):
    path = tmp_path / "log.db"
    with open_log(tmp_path / "real.jsonl") as jsonl:
        jsonl.write(record())
    path.write_bytes((tmp_path / "real.jsonl").read_bytes())
    before = path.read_bytes()
    with pytest.raises(NotAReviewLogError, match=r"looks like a JSONL review log: rename it to \*\.jsonl"):
        open_log(path).records()
    assert path.read_bytes() == before


def test_sqlite_database_named_jsonl_is_refused_not_appended_to(tmp_path):
    db = tmp_path / "real.sqlite"
    with open_log(db) as sink:
        sink.write(record())
    path = tmp_path / "log.jsonl"
    path.write_bytes(db.read_bytes())
    before = path.read_bytes()
    with pytest.raises(NotAReviewLogError, match="is a SQLite database, not a JSONL review log"):
        open_log(path).records()
    with pytest.raises(ReviewLogWriteError, match="SQLite database"):
        open_log(path).write(record())
    assert path.read_bytes() == before


def test_another_applications_database_is_not_taken_over(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(ReviewLogError, match=r"database of something else \(tables: users\)"):
        open_log(path).write(record())
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["users"]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    conn.close()


def test_unreadable_log_path_is_a_clear_error(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(ReviewLogError, match="is a directory"):
        open_log(tmp_path / "dir.jsonl").records()
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(ReviewLogError, match="dir.sqlite"):
        open_log(tmp_path / "dir.sqlite").records()
