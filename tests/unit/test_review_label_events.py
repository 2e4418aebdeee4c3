"""Labels with a reviewer and a corrected answer, the label history and the change feed
(``ReviewSink.changes``), sink by sink, on real files, real SQLite and the real PostgreSQL test server.

The behaviour every sink shares is in tests/contract/test_review_sink_contract.py; this module checks
what is each backend's own: JSONL's torn, replaced and truncated files, SQLite's rowids and old logs,
PostgreSQL's seqs that become visible out of order and its old tables, and that a call reads only
what is new.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import warnings

import pytest

from spill_guard.cli.main import main
from spill_guard.review import (
    InvalidLabelError,
    JsonlSink,
    LabelEvent,
    LogChanges,
    RecordSummary,
    ReviewLogWarning,
    ReviewLogWriteError,
    ReviewRecord,
    ReviewSink,
    SqliteSink,
    open_log,
)

FORK = multiprocessing.get_context("fork") if hasattr(os, "fork") else None


def record(i: int, **kw) -> ReviewRecord:
    base = dict(question=f"question {i}", answer=f"answer {i}", original_answer=f"answer {i}", action="flagged",
                flagged=True, score=0.5 + i, threshold=0.75, rule_version="threshold:0.75", spec="spilled_energy:mean",
                tokens=["a", str(i)], token_scores=[0.1, 0.2], model="tiny")
    base.update(kw)
    return ReviewRecord(**base)


def summaries(log: ReviewSink) -> list[RecordSummary]:
    return [RecordSummary.of(r) for r in log.records()]


def skip_messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ReviewLogWarning)]


# -- the record, the event, set_label --------------------------------------------------------------------------------
def test_old_lines_without_the_new_fields_still_read_and_new_lines_carry_them(tmp_path):
    path = tmp_path / "log.jsonl"
    old = record(1)
    line = json.loads(old.to_json())
    del line["labelled_by"], line["corrected_answer"]  # a record line written before the fields existed
    label = {"event": "label", "id": old.id, "label": "incorrect", "note": "n", "labelled_at": "2026-01-01T00:00:00"}
    path.write_text(json.dumps(line) + "\n" + json.dumps(label) + "\n")
    with open_log(path) as log:
        [read] = log.records()
        assert (read.label, read.label_note, read.labelled_by, read.corrected_answer) == ("incorrect", "n", None, None)
        assert log.label_events() == [LabelEvent(id=old.id, label="incorrect", note="n",
                                                 labelled_at="2026-01-01T00:00:00")]
        log.set_label(old.id, "correct", reviewer="amy", corrected_answer="better")
    last = json.loads(path.read_text().splitlines()[-1])
    assert (last["event"], last["reviewer"], last["corrected_answer"]) == ("label", "amy", "better")


def test_with_label_sets_all_five_fields_and_with_event_refuses_another_records_event():
    r = record(1).with_label("incorrect", "n", "t1", reviewer="amy", corrected_answer="x")
    assert (r.label, r.label_note, r.labelled_at, r.labelled_by, r.corrected_answer) == ("incorrect", "n", "t1", "amy", "x")
    relabelled = r.with_event(LabelEvent(id=r.id, label="correct", labelled_at="t2"))
    assert (relabelled.label_note, relabelled.labelled_by, relabelled.corrected_answer) == (None, None, None)
    assert RecordSummary.of(relabelled) == RecordSummary.of(r).with_event(LabelEvent(id=r.id, label="correct",
                                                                                       labelled_at="t2"))
    with pytest.raises(InvalidLabelError, match="apply each event to the record whose id it carries"):
        r.with_event(LabelEvent(id="other", label="correct"))


@pytest.mark.parametrize("field,value", [("reviewer", 5), ("corrected_answer", ["Paris"]), ("note", b"x")])
def test_set_label_refuses_a_reviewer_or_corrected_answer_that_is_not_text(tmp_path, field, value):
    with open_log(tmp_path / "log.sqlite") as log:
        r = record(1)
        log.write(r)
        with pytest.raises(InvalidLabelError, match=f"{field} must be text or None, got .*; pass .* as a string"):
            log.set_label(r.id, "correct", **{field: value})
        assert log.get(r.id).label is None and log.label_events() == []


def test_a_label_line_with_a_reviewer_of_the_wrong_type_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "log.jsonl"
    r = record(1)
    bad = {"event": "label", "id": r.id, "label": "correct", "reviewer": 7}
    path.write_text(r.to_json() + "\n" + json.dumps(bad) + "\n")
    with open_log(path) as log, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert log.records()[0].label is None and log.changes().labels == []
    assert skip_messages(caught) == [f"{path}:2: skipped a malformed label event: reviewer: Input should be a valid "
                                     "string (1 problem(s))"] * 2


class ListSink(ReviewSink):
    """A sink of one's own (in memory), with only the primitives: the base class's changes() serves it."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[str, ReviewRecord] = {}

    def _append(self, record: ReviewRecord) -> None:
        self.kept.pop(record.id, None)
        self.kept[record.id] = record

    def _append_label(self, event: LabelEvent) -> None:
        self.kept[event.id] = self.kept[event.id].with_event(event)

    def records(self) -> list[ReviewRecord]:
        return list(self.kept.values())

    def close(self) -> None:
        pass


def test_a_sink_of_ones_own_gets_a_whole_log_feed_and_no_history():
    sink = ListSink()
    first = sink.changes()
    assert first == LogChanges([], [], None, True)
    r = sink.kept.setdefault("x", record(1, id="x"))
    sink.set_label("x", "incorrect", reviewer="amy", corrected_answer="y")
    again = sink.changes(first.cursor)
    assert again.reset and again.labels == [] and again.records == [RecordSummary.of(sink.get(r.id))]
    assert again.records[0].labelled_by == "amy" and sink.label_events() == []


# -- JSONL -----------------------------------------------------------------------------------------------------------
def test_jsonl_reads_only_the_lines_after_its_cursor(tmp_path, monkeypatch):
    with open_log(tmp_path / "log.jsonl") as log:
        log.write_many([record(i) for i in range(20)])
        cursor = log.changes().cursor
        new = [record(i) for i in range(100, 103)]
        log.write_many(new)
        log.set_label(new[0].id, "correct", reviewer="amy")
        log.set_label(log.records()[0].id, "incorrect", reviewer="bob")
        parsed: list[bytes] = []
        real = JsonlSink._parsed

        def counting(self, raw, lineno, report):  # instrumentation: the real parser runs
            parsed.append(raw)
            return real(self, raw, lineno, report)

        monkeypatch.setattr(JsonlSink, "_parsed", counting)
        step = log.changes(cursor)
    assert len(parsed) == 5  # the 3 new record lines and 2 label lines, not the 20 before
    assert [s.id for s in step.records] == [r.id for r in new] and [e.reviewer for e in step.labels] == ["amy", "bob"]


def test_jsonl_a_torn_last_line_is_not_consumed_until_it_is_complete(tmp_path):
    path = tmp_path / "log.jsonl"
    with open_log(path) as log:
        log.write(record(1))
        cursor = log.changes().cursor
        torn = record(2)
        line = torn.to_json() + "\n"
        with open(path, "a") as f:  # a writer half-way through its line
            f.write(line[:40])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            waiting = log.changes(cursor)
        assert waiting.records == [] and waiting.labels == [] and skip_messages(caught) == []
        assert waiting.cursor == cursor  # nothing consumed
        with open(path, "a") as f:
            f.write(line[40:])
        done = log.changes(waiting.cursor)
        assert [s.id for s in done.records] == [torn.id] and not done.reset
        assert log.changes(done.cursor).records == []


def test_jsonl_a_line_torn_by_a_killed_writer_is_reported_once_when_the_next_writer_ends_it(tmp_path):
    path = tmp_path / "log.jsonl"
    with open_log(path) as log:
        log.write(record(1))
        cursor = log.changes().cursor
        with open(path, "a") as f:
            f.write('{"question": "killed mid-wri')  # the writer died here
        after = record(2)
        log.write(after)  # terminates the torn line first
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step = log.changes(cursor)
            assert log.changes(step.cursor).records == []
        assert [s.id for s in step.records] == [after.id]
        assert skip_messages(caught) == [f"{path}:2: skipped a line that is not valid JSON"]


def test_jsonl_a_replaced_or_truncated_file_resets_the_feed(tmp_path):
    path = tmp_path / "log.jsonl"
    with open_log(path) as log:
        log.write_many([record(i) for i in range(3)])
        cursor = log.changes().cursor

        other = tmp_path / "other.jsonl"  # replaced: another file (inode) under the same name
        replacement = [record(i) for i in range(10, 12)]
        with open_log(other) as writer:
            writer.write_many(replacement)
        os.replace(other, path)
        log.close()
        replaced = log.changes(cursor)
        assert replaced.reset and [s.id for s in replaced.records] == [r.id for r in replacement]

        with open(path, "r+b") as f:  # truncated below the cursor
            f.truncate(len(replacement[0].to_json()) + 1)
        truncated = log.changes(replaced.cursor)
        assert truncated.reset and [s.id for s in truncated.records] == [replacement[0].id]

        size = path.stat().st_size  # truncated to the cursor's line start and written again past it
        cursor = truncated.cursor
        with open(path, "r+b") as f:
            f.truncate(0)
        log.close()
        rewritten = [record(i) for i in range(20, 23)]
        log.write_many(rewritten)
        assert path.stat().st_size > size
        again = log.changes(cursor)
        assert again.reset and [s.id for s in again.records] == [r.id for r in rewritten]

        path.unlink()  # removed: nothing left, and that is a reset too
        gone = log.changes(again.cursor)
        assert gone.reset and gone.records == [] and gone.labels == []
        log.close()
        log.write(record(30))  # created again: new to a reader that saw it gone, not a reset
        back = log.changes(gone.cursor)
        assert not back.reset and len(back.records) == 1


def test_jsonl_feed_skips_what_records_skips_with_the_same_warnings(tmp_path):
    path = tmp_path / "log.jsonl"
    good = record(1)
    lines = [good.to_json(), '{"question": 5}', json.dumps({"event": "label", "id": "nope", "label": "correct"}),
             json.dumps({"event": "label", "id": good.id, "label": "correct", "reviewer": "amy", "labelled_at": "t"}),
             "[1, 2]"]
    path.write_text("\n".join(lines) + "\n")
    with open_log(path) as log:
        with warnings.catch_warnings(record=True) as from_records:
            warnings.simplefilter("always")
            expected = summaries(log)
        with warnings.catch_warnings(record=True) as from_changes:
            warnings.simplefilter("always")
            feed = log.changes()
        assert feed.records == expected and [e.reviewer for e in feed.labels] == ["amy"]
    assert skip_messages(from_changes) == skip_messages(from_records) and len(skip_messages(from_records)) == 3


# -- SQLite ----------------------------------------------------------------------------------------------------------
# The schema of a SQLite review log before the label history (git HEAD before it was added).
OLD_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    action TEXT NOT NULL,
    flagged INTEGER NOT NULL,
    score REAL,
    label TEXT,
    label_note TEXT,
    labelled_at TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_created_at ON records(created_at);
CREATE INDEX IF NOT EXISTS records_action ON records(action);
CREATE INDEX IF NOT EXISTS records_flagged ON records(flagged);
CREATE INDEX IF NOT EXISTS records_label ON records(label);
"""


def old_sqlite_log(path, records: list[ReviewRecord], label: tuple[int, str, str] | None = None) -> None:
    """A log as the previous SqliteSink wrote it (WAL mode, old table), with an optional (index, label, note)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(OLD_SQLITE_SCHEMA)
    for r in records:
        conn.execute("INSERT INTO records (id, created_at, action, flagged, score, data) VALUES (?, ?, ?, ?, ?, ?)",
                     (r.id, r.created_at, r.action, int(r.flagged), r.score, r.to_json()))
    if label is not None:
        i, name, note = label
        conn.execute("UPDATE records SET label = ?, label_note = ?, labelled_at = ? WHERE id = ?",
                     (name, note, "2026-01-02T00:00:00.000000+00:00", records[i].id))
    conn.commit()
    conn.close()


def test_an_old_sqlite_log_reads_then_is_upgraded_and_labels_with_a_reviewer(tmp_path):
    path = tmp_path / "old.sqlite"
    old = [record(1), record(2)]
    old_sqlite_log(path, old, label=(0, "incorrect", "from before"))
    with open_log(path) as log:
        first = log.get(old[0].id)
        assert (first.label, first.label_note, first.labelled_by, first.corrected_answer) == \
            ("incorrect", "from before", None, None)
        # the only history an old log kept, its latest labels, became the start of the history
        assert log.label_events() == [LabelEvent(id=old[0].id, label="incorrect", note="from before",
                                                 labelled_at="2026-01-02T00:00:00.000000+00:00")]
        feed = log.changes()
        log.set_label(old[1].id[:8], "incorrect", reviewer="amy", corrected_answer="fixed")
        relabelled = log.set_label(old[0].id, "correct", reviewer="bob")
        assert (relabelled.labelled_by, relabelled.label_note) == ("bob", None)
        assert [(e.id, e.reviewer) for e in log.label_events()] == \
            [(old[0].id, None), (old[1].id, "amy"), (old[0].id, "bob")]
        step = log.changes(feed.cursor)
        assert not step.reset and [e.reviewer for e in step.labels] == ["amy", "bob"]
        log.write(record(3))
    conn = sqlite3.connect(path)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    assert {"labelled_by", "corrected_answer"} <= columns
    assert conn.execute("SELECT count(*) FROM labels").fetchone()[0] == 3
    conn.close()


@pytest.mark.skipif(FORK is None, reason="needs fork")
def test_an_old_sqlite_log_opened_by_several_processes_at_once_is_upgraded_once(tmp_path):
    path = tmp_path / "old.sqlite"
    old = [record(i) for i in range(5)]
    old_sqlite_log(path, old, label=(0, "correct", "kept"))

    def write_and_label(worker: int) -> None:
        with SqliteSink(path) as log:
            r = record(100 + worker)
            log.write(r)
            log.set_label(r.id, "incorrect", reviewer=f"w{worker}")

    procs = [FORK.Process(target=write_and_label, args=(w,)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    with open_log(path) as log:
        events = log.label_events()
        assert len(log.records()) == 9 and len(events) == 5  # the old label copied once, then one per worker
        assert events[0] == LabelEvent(id=old[0].id, label="correct", note="kept",
                                       labelled_at="2026-01-02T00:00:00.000000+00:00")
        assert sorted(e.reviewer for e in events[1:]) == ["w0", "w1", "w2", "w3"]


def test_an_old_sqlite_log_on_a_read_only_filesystem_is_still_read(tmp_path):
    from tmpfs_support import mounted_tmpfs, remount_read_only

    with mounted_tmpfs(tmp_path / "mnt", size="1m") as where:
        path = where / "old.sqlite"
        old = [record(1), record(2)]
        old_sqlite_log(path, old, label=(1, "incorrect", "n"))
        remount_read_only(where)
        with open_log(path) as log:
            read = log.records()
            assert [(r.id, r.label, r.labelled_by) for r in read] == [(old[0].id, None, None),
                                                                     (old[1].id, "incorrect", None)]
            feed = log.changes()
            assert feed.reset and feed.records == summaries(log) and feed.labels == []  # no history to read
            assert log.changes(feed.cursor).records == []
            with pytest.raises(ReviewLogWriteError):
                log.set_label(old[0].id, "correct", reviewer="amy")


def test_sqlite_a_rewrite_takes_a_new_rowid_even_for_the_newest_record(tmp_path):
    path = tmp_path / "log.sqlite"
    with open_log(path) as log:
        a, b = record(1), record(2)
        log.write_many([a, b])
        cursor = log.changes().cursor
        log.write(b.model_copy(update={"answer": "again"}))  # plain INSERT OR REPLACE would give it rowid 2 again
        step = log.changes(cursor)
        assert [(s.id, s.answer) for s in step.records] == [(b.id, "again")]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT rowid, id FROM records ORDER BY rowid").fetchall() == [(1, a.id), (3, b.id)]
    conn.close()


def test_sqlite_summaries_come_from_sql_and_only_new_rows_are_read(tmp_path, monkeypatch):
    with open_log(tmp_path / "log.sqlite") as log:
        log.write_many([record(i) for i in range(30)])
        cursor = log.changes().cursor
        tricky = record(100, question="caf\udce9 \x00 NUL, lone surrogate, \"quotes\" and \n", model="m\u202e")
        new = [tricky, record(101, rule_version=None, threshold=None), record(102)]
        log.write_many(new)
        log.set_label(new[1].id, "incorrect", reviewer="amy", corrected_answer="x")
        calls = {"summary": 0, "whole": 0}
        real_summary, real_whole = SqliteSink._summary, SqliteSink._row_record

        def summary(self, row, report):  # instrumentation: the real methods run
            calls["summary"] += 1
            return real_summary(self, row, report)

        def whole(self, row, report):
            calls["whole"] += 1
            return real_whole(self, row, report)

        monkeypatch.setattr(SqliteSink, "_summary", summary)
        monkeypatch.setattr(SqliteSink, "_row_record", whole)
        step = log.changes(cursor)
        assert calls == {"summary": 3, "whole": 0}  # 3 rows read, no record JSON parsed in Python
        monkeypatch.undo()
        assert step.records == summaries(log)[-3:] and step.records[0].question == tricky.question
        assert step.records[1].labelled_by == "amy"


def test_sqlite_rows_deleted_by_hand_reset_the_feed(tmp_path):
    path = tmp_path / "log.sqlite"
    with open_log(path) as log:
        log.write_many([record(i) for i in range(3)])
        cursor = log.changes().cursor
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM records WHERE rowid >= 2")
        conn.commit()
        conn.close()
        log.write_many([record(10), record(11)])  # rowids 2 and 3 again, other records
        after = log.changes(cursor)
        assert after.reset and after.records == summaries(log)


def test_sqlite_feed_skips_what_records_skips_with_the_same_warnings(tmp_path):
    path = tmp_path / "log.sqlite"
    with open_log(path) as log:
        good = record(1)
        log.write(good)
        log.set_label(good.id, "correct", reviewer="amy")
    conn = sqlite3.connect(path)
    rows = [("bad1", "not json"), ("bad2", json.dumps({"id": "bad2", "question": 5})),
            ("other", record(2).to_json()), ("nomodel", json.dumps({**json.loads(record(3, id="nomodel").to_json()),
                                                                    "model": None}))]
    conn.executemany("INSERT INTO records (id, created_at, action, flagged, data) VALUES (?, 't', 'passed', 0, ?)", rows)
    conn.execute("UPDATE records SET label = 'maybe' WHERE id = ?", (good.id,))
    conn.commit()
    conn.close()
    with open_log(path) as log:
        with warnings.catch_warnings(record=True) as from_records:
            warnings.simplefilter("always")
            expected = summaries(log)
        with warnings.catch_warnings(record=True) as from_changes:
            warnings.simplefilter("always")
            feed = log.changes()
    assert feed.records == expected and [s.id for s in feed.records] == [good.id] and feed.records[0].label is None
    assert sorted(skip_messages(from_changes)) == sorted(skip_messages(from_records))
    assert len(skip_messages(from_records)) == 5


# -- PostgreSQL ------------------------------------------------------------------------------------------------------
@pytest.fixture
def pg(postgres_server, postgres_log_url):
    pytest.importorskip("psycopg", reason="needs: pip install 'spill-guard[postgres]'")
    import psycopg

    with open_log(postgres_log_url) as log, psycopg.connect(postgres_server.url, autocommit=True) as other:
        yield log, other


def insert_uncommitted(conn, table: str, r: ReviewRecord) -> None:
    """Insert ``r`` as a guard writing in a transaction of its own would, inside ``conn``'s open transaction."""
    conn.execute(f'INSERT INTO "{table}" (id, created_at, action, flagged, score, data) VALUES (%s, %s, %s, %s, %s, %s)',
                 (r.id, r.created_at, r.action, r.flagged, r.score, r.to_json()))


def test_postgres_a_record_whose_smaller_seq_commits_later_is_not_skipped(pg):
    log, other = pg
    log.write(record(0))
    cursor = log.changes().cursor
    late = record(1)
    with other.transaction():
        insert_uncommitted(other, log.table, late)  # takes the smaller seq, commits last
        early = record(2)
        log.write(early)  # a higher seq, committed first
        first = log.changes(cursor)
        assert [s.id for s in first.records] == [early.id]
        still = log.changes(first.cursor)  # polled again while the writer is still open
        assert still.records == []
    seqs = dict(other.execute(f'SELECT id, seq FROM "{log.table}"').fetchall())
    assert seqs[late.id] < seqs[early.id]
    second = log.changes(still.cursor)
    assert [s.id for s in second.records] == [late.id] and not second.reset  # given once, the other not again
    assert log.changes(second.cursor).records == []
    view: dict[str, RecordSummary] = {}
    for answer in (log.changes(), ):
        answer.apply(view)
    assert list(view.values()) == summaries(log)


def test_postgres_a_label_whose_smaller_seq_commits_later_is_not_skipped(pg):
    log, other = pg
    a, b = record(1), record(2)
    log.write_many([a, b])
    cursor = log.changes().cursor
    with other.transaction():  # a labeller that has appended its event but not committed yet
        other.execute(f'UPDATE "{log.table}" SET label = %s, labelled_at = %s WHERE id = %s', ("incorrect", "t1", a.id))
        other.execute(f'INSERT INTO "{log.table}_labels" (record_id, label, labelled_at, reviewer) '
                      "VALUES (%s, %s, %s, %s)", (a.id, "incorrect", "t1", "late"))
        log.set_label(b.id, "correct", reviewer="early")
        first = log.changes(cursor)
        assert [e.reviewer for e in first.labels] == ["early"]
    second = log.changes(first.cursor)
    assert [e.reviewer for e in second.labels] == ["late"] and second.records == []
    assert log.changes(second.cursor).labels == []
    assert sorted(e.reviewer for e in first.labels + second.labels) == sorted(e.reviewer for e in log.label_events())


def test_postgres_summaries_come_from_sql_and_only_new_rows_are_read(pg, monkeypatch):
    from spill_guard.review import PostgresSink

    log, _ = pg
    log.write_many([record(i) for i in range(30)])
    cursor = log.changes().cursor
    new = [record(100, model="m\u202e \"q\""), record(101, rule_version=None, threshold=None), record(102)]
    log.write_many(new)
    log.set_label(new[1].id, "incorrect", reviewer="amy", corrected_answer="x")
    calls = {"summary": 0, "whole": 0}
    real_summary, real_whole = PostgresSink._summary, PostgresSink._row_record

    def summary(self, row, report):  # instrumentation: the real methods run
        calls["summary"] += 1
        return real_summary(self, row, report)

    def whole(self, row, report):
        calls["whole"] += 1
        return real_whole(self, row, report)

    monkeypatch.setattr(PostgresSink, "_summary", summary)
    monkeypatch.setattr(PostgresSink, "_row_record", whole)
    step = log.changes(cursor)
    assert calls == {"summary": 3, "whole": 0}  # only the new rows, and no record JSON parsed in Python
    monkeypatch.undo()
    assert step.records == summaries(log)[-3:] and step.records[1].labelled_by == "amy"


def test_postgres_text_jsonb_cannot_hold_and_rows_that_are_not_records_read_as_records_reads_them(pg):
    log, other = pg
    tricky = record(1, question="caf\udce9 \x00 NUL and a lone surrogate")
    log.write_many([tricky, record(2)])
    assert log.changes().records == summaries(log) and log.changes().records[0].question == tricky.question
    other.execute(f'INSERT INTO "{log.table}" (id, created_at, action, flagged, data) VALUES '
                  "('junk', 't', 'passed', false, 'not json'), ('arr', 't', 'passed', false, '[1]')")
    with warnings.catch_warnings(record=True) as from_records:
        warnings.simplefilter("always")
        expected = summaries(log)
    with warnings.catch_warnings(record=True) as from_changes:
        warnings.simplefilter("always")
        feed = log.changes()
    assert feed.records == expected and len(expected) == 2
    assert skip_messages(from_changes) == skip_messages(from_records) and len(skip_messages(from_records)) == 2


def test_postgres_a_truncated_table_resets_the_feed(pg):
    log, other = pg
    log.write_many([record(1), record(2)])
    cursor = log.changes().cursor
    other.execute(f'TRUNCATE "{log.table}" CASCADE')
    fresh = record(3)
    log.write(fresh)
    after = log.changes(cursor)
    assert after.reset and [s.id for s in after.records] == [fresh.id]


# The tables of a PostgreSQL review log before the reviewer columns were added (schema version 1 as first released).
OLD_PG_TABLES = (
    'CREATE TABLE "{t}" (id text COLLATE "C" PRIMARY KEY, seq bigserial NOT NULL, created_at text NOT NULL, '
    "action text NOT NULL, flagged boolean NOT NULL, score double precision, label text, label_note text, "
    "labelled_at text, data text NOT NULL)",
    'CREATE TABLE "{t}_labels" (seq bigserial PRIMARY KEY, record_id text COLLATE "C" NOT NULL '
    'REFERENCES "{t}" (id) ON DELETE CASCADE, label text NOT NULL, note text, labelled_at text NOT NULL)',
    "CREATE TABLE IF NOT EXISTS spill_guard_schema (log_table text PRIMARY KEY, version integer NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO spill_guard_schema (log_table, version) VALUES ('{t}', 1)",
)


def old_pg_log(conn, table: str, records: list[ReviewRecord]) -> None:
    for statement in OLD_PG_TABLES:
        conn.execute(statement.replace("{t}", table))
    for r in records:
        insert_uncommitted(conn, table, r)
    conn.execute(f'UPDATE "{table}" SET label = %s, label_note = %s, labelled_at = %s WHERE id = %s',
                 ("incorrect", "old", "t0", records[0].id))
    conn.execute(f'INSERT INTO "{table}_labels" (record_id, label, note, labelled_at) VALUES (%s, %s, %s, %s)',
                 (records[0].id, "incorrect", "old", "t0"))


def test_an_old_postgres_log_reads_then_is_upgraded_and_labels_with_a_reviewer(pg):
    log, other = pg
    old = [record(1), record(2)]
    old_pg_log(other, log.table, old)
    first = log.get(old[0].id)  # reading adds nothing
    assert (first.label, first.label_note, first.labelled_by, first.corrected_answer) == ("incorrect", "old", None, None)
    feed = log.changes()
    assert feed.records == summaries(log) and [(e.note, e.reviewer) for e in feed.labels] == [("old", None)]
    columns = other.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
                            (log.table,)).fetchall()
    assert "labelled_by" not in {c[0] for c in columns}
    log.set_label(old[1].id, "correct", reviewer="amy", corrected_answer="x")  # a write upgrades the tables
    assert (log.get(old[1].id).labelled_by, log.get(old[1].id).corrected_answer) == ("amy", "x")
    assert [e.reviewer for e in log.label_events()] == [None, "amy"]
    step = log.changes(feed.cursor)
    assert [e.reviewer for e in step.labels] == ["amy"] and not step.reset


def test_an_old_postgres_log_written_by_a_user_who_may_not_alter_it(pg, postgres_server):
    log, other = pg
    old = [record(1)]
    old_pg_log(other, log.table, old)
    other.execute("DO $$ BEGIN CREATE ROLE guard_writer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    other.execute(f'GRANT SELECT, INSERT, UPDATE ON "{log.table}", "{log.table}_labels", spill_guard_schema '
                  "TO guard_writer")
    other.execute(f'GRANT USAGE ON "{log.table}_seq_seq", "{log.table}_labels_seq_seq" TO guard_writer')
    url = (f"postgresql://guard_writer@{postgres_server.host}:{postgres_server.port}/{postgres_server.database}"
           f"#{log.table}")
    with open_log(url) as writer:
        fresh = record(2)
        writer.write(fresh)  # the guard goes on writing records
        writer.set_label(fresh.id, "incorrect", note="no reviewer: fine")
        with pytest.raises(ReviewLogWriteError, match="let the owner of .* open the log once to add them"):
            writer.set_label(fresh.id, "correct", reviewer="amy")
        assert [e.note for e in writer.label_events()] == ["old", "no reviewer: fine"]
        log.write(record(3))  # the owner writes: the columns are added
        writer.set_label(fresh.id, "correct", reviewer="amy")
        assert writer.get(fresh.id).labelled_by == "amy"


# -- the CLI ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
def test_cli_labels_with_a_reviewer_and_a_corrected_answer_and_show_prints_them(tmp_path, capsys, monkeypatch, suffix):
    monkeypatch.delenv("SPILL_GUARD_LOG", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    path = tmp_path / f"log{suffix}"
    r = record(1)
    with open_log(path) as log:
        log.write(r)
    assert main(["review", "label", "--log", str(path), r.id[:8], "incorrect", "--note", "wrong",
                 "--reviewer", "amy", "--corrected-answer", "Paris, ask bob@example.org"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{r.id}: incorrect by amy (wrong)", "corrected answer: Paris, ask [REDACTED]"]
    assert main(["review", "show", "--log", str(path), r.id[:8]]) == 0
    shown = capsys.readouterr().out
    assert "label     incorrect — wrong  (at " in shown and ", by amy)" in shown
    assert "corrected Paris, ask [REDACTED]" in shown
    assert main(["review", "label", "--log", str(path), r.id[:8], "correct", "--corrected-answer",
                 "mail bob@example.org", "--keep-pii"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{r.id}: correct", "corrected answer: mail bob@example.org"]
    with open_log(path) as log:
        assert [(e.reviewer, e.corrected_answer) for e in log.label_events()] == \
            [("amy", "Paris, ask [REDACTED]"), (None, "mail bob@example.org")]


def test_postgres_a_reviewer_who_may_only_select_reads_the_feed_and_the_history(pg, postgres_server):
    log, other = pg
    r = record(1)
    log.write(r)
    log.set_label(r.id, "incorrect", reviewer="amy")
    other.execute("DO $$ BEGIN CREATE ROLE feed_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    other.execute(f'GRANT SELECT ON "{log.table}", "{log.table}_labels", spill_guard_schema TO feed_reader')
    url = (f"postgresql://feed_reader@{postgres_server.host}:{postgres_server.port}/{postgres_server.database}"
           f"#{log.table}")
    with open_log(url) as reader:
        feed = reader.changes()
        assert feed.records == summaries(log) and [e.reviewer for e in feed.labels] == ["amy"]
        log.write(record(2))
        assert len(reader.changes(feed.cursor).records) == 1 and reader.label_events() == log.label_events()
