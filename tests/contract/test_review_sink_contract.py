"""The contract every review sink's ``write_many`` honours (issue 19 item 13), on the real
backends: JSONL, SQLite and a PostgreSQL server on 127.0.0.1 (tests/postgres_support.py).

* ``write_many(records)`` stores exactly what ``write(record)`` called once per record
  stores, in the same order (a repeated id replaces the earlier record, redaction applies
  to each record) and returns the same ids;
* a record that cannot be stored alone (a value JSON cannot hold) fails alone: the others
  are stored and :class:`ReviewLogBatchWriteError` carries each record's id or error;
* the batch is one durable commit: one ``fsync`` (JSONL), one ``COMMIT`` (SQLite), one
  transaction (PostgreSQL: every row carries the same ``xmin``).

And what every sink does with labels: a reviewer and a corrected answer kept with the latest label
(the corrected answer redacted before it is stored), every label event kept in order
(``label_events``), and ``changes(cursor)``: everything first, then only what was written since,
rewrites included, while processes write.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from spill_guard.review import (
    LabelEvent,
    RecordSummary,
    ReviewLogBatchWriteError,
    ReviewLogWriteError,
    ReviewRecord,
    open_log,
    redact_patterns,
)

BACKENDS = ["jsonl", "sqlite", "postgres"]


def record(i: int, **kw) -> ReviewRecord:
    base = dict(question=f"question {i}: mail me at a{i}@example.com", answer=f"answer {i}",
                original_answer=f"answer {i}", action="flagged" if i % 2 else "passed", flagged=bool(i % 2),
                score=0.1 * i, threshold=0.5, spec="spilled_energy:mean", tokens=["a", str(i)],
                token_scores=[0.1, 0.2 * i], model="tiny", tags=["t"], metadata={"i": i, "nested": [i, "x"]})
    base.update(kw)
    return ReviewRecord(**base)


@pytest.fixture(params=BACKENDS)
def log_location(request, tmp_path):
    """A function giving a fresh, empty log location of the backend (two sinks never share one)."""
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        return server.fresh_log_url
    counter = iter(range(1000))
    suffix = ".jsonl" if request.param == "jsonl" else ".sqlite"
    return lambda: str(tmp_path / f"log{next(counter)}{suffix}")


def unstamped(records: list[ReviewRecord]) -> list[ReviewRecord]:
    return [r.model_copy(update={"labelled_at": None}) for r in records]


def batch() -> list[ReviewRecord]:
    records = [record(i) for i in range(6)]
    rewritten = records[1].model_copy(update={"answer": "rewritten"})  # same id, later in the batch
    return [*records, rewritten, record(9, question="caf\udce9 \x00 lone surrogate and NUL")]


@pytest.mark.parametrize("redact", [None, redact_patterns()], ids=["plain", "redacted"])
def test_write_many_stores_exactly_what_n_writes_store(log_location, redact):
    records = batch()
    with open_log(log_location(), redact=redact) as one_by_one, open_log(log_location(), redact=redact) as batched:
        ids = [one_by_one.write(r) for r in records]
        assert batched.write_many(records) == ids
        stored = one_by_one.records()
        assert batched.records() == stored
        assert len(stored) == len(records) - 1 and stored[-2].answer == "rewritten"  # the rewrite moved to the end
        if redact is not None:
            assert all("example.com" not in r.question for r in stored)
        # both logs go on as logs: labels, lookups and later writes work the same
        later = record(20)
        for sink in (one_by_one, batched):
            sink.set_label(ids[2][:10], "incorrect", note="wrong")
            sink.write_many([later])
        assert unstamped(batched.records()) == unstamped(one_by_one.records())  # labelled at different times
        assert batched.write_many([]) == []


def test_a_record_that_cannot_be_stored_fails_alone(log_location):
    records = [record(0), record(1, metadata={"huge": 10**5000}), record(2)]
    with open_log(log_location()) as one_by_one, open_log(log_location()) as batched:
        expected = []
        for r in records:
            try:
                expected.append(one_by_one.write(r))
            except ReviewLogWriteError as exc:
                expected.append(exc)
        with pytest.raises(ReviewLogBatchWriteError, match="1 of 3 records") as info:
            batched.write_many(records)
        results = info.value.results
        assert [type(x) for x in results] == [type(x) for x in expected] == [str, ReviewLogWriteError, str]
        assert results[0] == records[0].id and results[2] == records[2].id
        assert str(results[1]).replace(batched.location, "LOG") == str(expected[1]).replace(one_by_one.location, "LOG")
        assert isinstance(results[1].__cause__, ValueError)
        assert info.value.failures == {1: results[1]}
        assert batched.records() == one_by_one.records() == [records[0], records[2]]


def test_a_batch_is_one_durable_commit(log_location, monkeypatch, request):
    records, single = [record(i) for i in range(5)], record(99)
    with open_log(log_location()) as sink:
        if sink.__class__.__name__ == "JsonlSink":
            synced = []
            real_fsync = os.fsync

            def counting_fsync(fd: int) -> None:  # instrumentation: the real fsync runs
                synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                real_fsync(fd)

            monkeypatch.setattr(os, "fsync", counting_fsync)
            sink.write_many(records)
            assert synced == [str(sink.path.resolve())]
        elif sink.__class__.__name__ == "SqliteSink":
            sink.write(single)  # connect (and create the schema) first
            statements: list[str] = []
            sink._connection().set_trace_callback(statements.append)
            sink.write_many(records)
            assert [s.strip().upper() for s in statements if s.strip().upper() in ("BEGIN IMMEDIATE", "COMMIT")] \
                == ["BEGIN IMMEDIATE", "COMMIT"]
            assert sum("INSERT" in s.upper() for s in statements) == len(records)
        else:
            import psycopg

            sink.write_many(records)
            sink.write(single)
            with psycopg.connect(request.getfixturevalue("postgres_server").url, autocommit=True) as conn:
                rows = conn.execute(f'SELECT xmin::text, id FROM "{sink.table}" ORDER BY seq').fetchall()
            assert [r[1] for r in rows] == [r.id for r in records] + [single.id]
            assert len({r[0] for r in rows[:5]}) == 1 and rows[5][0] != rows[0][0]  # one transaction for the batch


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
def test_a_commit_that_fails_fails_every_record_it_carried_and_stores_none(tmp_path, suffix):
    """A real full disk (a 256 kB tmpfs): the batch is all or nothing, and the log stays as it was."""
    from tmpfs_support import mounted_tmpfs

    with mounted_tmpfs(tmp_path / "mnt", size="256k") as where, open_log(where / f"log{suffix}") as sink:
        first = record(0)
        sink.write(first)
        too_much = [record(i, answer="x" * 4000) for i in range(1, 120)]  # ~480 kB: cannot fit
        with pytest.raises(ReviewLogBatchWriteError, match="119 of 119 records") as info:
            sink.write_many(too_much)
        errors = info.value.results
        assert all(isinstance(e, ReviewLogWriteError) and "free space" in str(e) for e in errors)
        assert len({id(e) for e in errors}) == 1  # one commit, one failure
        assert sink.records() == [first]
        assert sink.write_many([record(200)])  # and the log takes the next batch


# -- labels with a reviewer and a corrected answer, the label history, the change feed ----------------------------
# Every sink keeps who labelled and the corrected answer with the latest label, every label event in order
# (label_events), and answers changes(cursor) with what was written after the cursor.


def summaries(log) -> list[RecordSummary]:
    return [RecordSummary.of(r) for r in log.records()]


def stored_bytes(log, request) -> bytes:
    """Everything the (closed) log keeps: its file and -wal file, or every row of its two tables as text."""
    if log.__class__.__name__ == "PostgresSink":
        import psycopg

        with psycopg.connect(request.getfixturevalue("postgres_server").url, autocommit=True) as conn:
            rows = [conn.execute(f'SELECT string_agg(t::text, \'\n\') FROM "{name}" AS t').fetchone()[0]
                    for name in (log.table, f"{log.table}_labels")]
        return "\n".join(rows).encode()
    files = [log.path, log.path.with_name(log.path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def test_reviewer_and_corrected_answer_round_trip_the_latest_wins_and_the_history_is_kept(log_location):
    with open_log(log_location()) as log:
        a, b = record(1), record(2)
        log.write_many([a, b])
        first = log.set_label(a.id[:10], "incorrect", note="wrong city", reviewer="amy", corrected_answer="Paris")
        assert (first.label, first.labelled_by, first.corrected_answer) == ("incorrect", "amy", "Paris")
        log.set_label(b.id, "correct", reviewer="bob")
        latest = log.set_label(a.id, "correct", note="on second thought", reviewer="Zoë Łukasz")
        for r in (log.get(a.id[:6]), log.records()[0], log.labelled()[0]):  # every reader: the latest label whole
            assert (r.label, r.label_note, r.labelled_by, r.corrected_answer, r.labelled_at) == \
                ("correct", "on second thought", "Zoë Łukasz", None, latest.labelled_at)
        assert (log.get(b.id).labelled_by, log.get(b.id).corrected_answer) == ("bob", None)
        events = log.label_events()
        assert [(e.id, e.label, e.note, e.reviewer, e.corrected_answer) for e in events] == [
            (a.id, "incorrect", "wrong city", "amy", "Paris"),
            (b.id, "correct", None, "bob", None),
            (a.id, "correct", "on second thought", "Zoë Łukasz", None),
        ]
        assert events[0].labelled_at == first.labelled_at and events[2].labelled_at == latest.labelled_at
        assert log.label_events(a.id) == [events[0], events[2]] and log.label_events("f" * 32) == []
        log.write(a)  # a rewrite replaces the record, label included; the history keeps what was given
        assert (log.get(a.id).label, log.get(a.id).labelled_by) == (None, None) and log.label_events() == events


def test_a_corrected_answer_is_redacted_before_it_is_stored_and_the_reviewer_is_stored_as_given(log_location, request):
    with open_log(log_location(), redact=redact_patterns()) as log:
        r = record(1)
        log.write(r)
        labelled = log.set_label(r.id, "incorrect", note="asked by bob@example.org", reviewer="amy@example.org",
                                 corrected_answer="call 555-123-4567 or carl@example.org")
        assert labelled.corrected_answer == "call [REDACTED] or [REDACTED]"
        assert labelled.label_note == "asked by [REDACTED]" and labelled.labelled_by == "amy@example.org"
        [event] = log.label_events()
        assert (event.corrected_answer, event.note, event.reviewer) == \
            ("call [REDACTED] or [REDACTED]", "asked by [REDACTED]", "amy@example.org")
    raw = stored_bytes(log, request)
    assert b"call [REDACTED] or [REDACTED]" in raw and b"amy@example.org" in raw
    assert b"555-123-4567" not in raw and b"carl@example" not in raw and b"bob@example" not in raw


def test_changes_give_everything_first_then_only_what_was_written_since(log_location):
    with open_log(log_location()) as log:
        empty = log.changes()
        assert empty.reset and empty.records == [] and empty.labels == []
        old = [record(i) for i in range(4)]
        log.write_many(old)
        log.set_label(old[0].id, "incorrect", reviewer="amy")
        everything = log.changes()
        assert everything.reset and everything.records == summaries(log)
        assert [(e.id, e.reviewer) for e in everything.labels] == [(old[0].id, "amy")]
        from_empty = log.changes(empty.cursor)  # the log was empty at that cursor: all of it is new, not a reset
        assert not from_empty.reset and from_empty.records == everything.records and from_empty.labels == everything.labels

        new = [record(i) for i in range(10, 13)]
        for r in new:
            log.write(r)
        log.set_label(new[0].id, "correct", reviewer="bob", corrected_answer="a better answer")
        log.set_label(old[1].id, "incorrect", reviewer="cy")
        step = log.changes(everything.cursor)
        assert not step.reset
        assert [s.id for s in step.records] == [r.id for r in new]  # exactly the new ones, in write order
        assert step.records == summaries(log)[-3:] and step.records[0].labelled_by == "bob"
        assert [(e.id, e.reviewer, e.corrected_answer) for e in step.labels] == \
            [(new[0].id, "bob", "a better answer"), (old[1].id, "cy", None)]
        quiet = log.changes(step.cursor)
        assert not quiet.reset and quiet.records == [] and quiet.labels == []

        # a record written again shows up again: the newest one (whose rowid SQLite's INSERT OR REPLACE would
        # reuse) and an older one; the rewrite replaces the older one's label
        log.write(new[2].model_copy(update={"answer": "rewritten newest"}))
        log.write(old[0].model_copy(update={"answer": "rewritten old"}))
        again = log.changes(quiet.cursor)
        assert [(s.id, s.answer, s.label) for s in again.records] == \
            [(new[2].id, "rewritten newest", None), (old[0].id, "rewritten old", None)]
        assert again.labels == [] and log.changes(again.cursor).records == []

        view: dict[str, RecordSummary] = {}
        for answer in (empty, from_empty, step, quiet, again):
            answer.apply(view)
        assert list(view.values()) == summaries(log)  # the folded feed is what records() reads
        assert everything.labels + step.labels == log.label_events()


def _write_and_label(location: str, worker: int, n: int) -> None:
    written: list[ReviewRecord] = []
    with open_log(location) as log:
        for i in range(n):
            r = record(1000 * worker + i)
            log.write(r)
            written.append(r)
            if i % 3 == 0:
                log.set_label(r.id, "incorrect", reviewer=f"w{worker}", corrected_answer=f"fix {i}")
            if i % 5 == 0:  # another label on an earlier record: history
                log.set_label(written[i // 2].id, "correct", reviewer=f"w{worker}")
            if i % 10 == 9:  # a rewrite now and then
                log.write(r.model_copy(update={"answer": f"again {i}"}))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the writers are forked processes")
def test_a_reader_polling_changes_while_processes_write_ends_with_exactly_the_log(log_location):
    location = log_location()
    with open_log(location) as log:
        log.write(record(-1))  # the tables / file exist before the writers start
        writers = [multiprocessing.get_context("fork").Process(target=_write_and_label, args=(location, w, 50)) for w in range(2)]
        for p in writers:
            p.start()
        view: dict[str, RecordSummary] = {}
        events: list[LabelEvent] = []
        cursor, polls = None, 0
        while True:
            done = not any(p.is_alive() for p in writers)  # read once more after the writers ended
            answer = log.changes(cursor)
            answer.apply(view)
            events = ([] if answer.reset else events) + answer.labels
            cursor, polls = answer.cursor, polls + 1
            if done:
                break
            time.sleep(0.005)
        for p in writers:
            p.join()
            assert p.exitcode == 0
        assert polls > 2
        records = log.records()
        # the same summaries; in the same order too, except on PostgreSQL for a record whose transaction
        # committed after that of a record written later (given later, so it comes later in the view)
        assert len(records) == 101 and view == {r.id: RecordSummary.of(r) for r in records}
        history = log.label_events()
        assert len(history) == 2 * (17 + 10)
        # PostgreSQL may deliver a label committed late after a later one of another record: compare each
        # record's history (one record's labels are serialised by its row lock, so they keep their order)
        assert sorted(events, key=lambda e: e.id) == sorted(history, key=lambda e: e.id)


def test_get_many_returns_the_records_with_those_ids_in_the_order_given(log_location):
    with open_log(log_location()) as sink:
        ids = sink.write_many([record(i) for i in range(700)])  # > 500: the SQLite lookup goes in chunks
        sink.set_label(ids[3], "incorrect", reviewer="alice")
        wanted = [ids[650], ids[3], "no-such-id", ids[0], ids[3], *ids[100:600]]
        got = sink.get_many(wanted)
        assert [r.id for r in got] == [ids[650], ids[3], ids[0], *ids[100:600]]
        assert got[1] == sink.get(ids[3]) and got[1].labelled_by == "alice"
        assert sink.get_many([]) == [] and sink.get_many(["no-such-id"]) == []
        assert sink.get(ids[10][:12]).id == ids[10]  # a prefix still finds its record
