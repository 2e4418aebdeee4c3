"""The contract every review sink's ``write_many`` honours (issue 19 item 13), on the real
backends: JSONL, SQLite and a PostgreSQL server on 127.0.0.1 (tests/postgres_support.py).

* ``write_many(records)`` stores exactly what ``write(record)`` called once per record
  stores, in the same order (a repeated id replaces the earlier record, redaction applies
  to each record) and returns the same ids;
* a record that cannot be stored alone (a value JSON cannot hold) fails alone: the others
  are stored and :class:`ReviewLogBatchWriteError` carries each record's id or error;
* the batch is one durable commit: one ``fsync`` (JSONL), one ``COMMIT`` (SQLite), one
  transaction (PostgreSQL: every row carries the same ``xmin``).
"""

from __future__ import annotations

import os

import pytest

from spill_guard.review import ReviewLogBatchWriteError, ReviewLogWriteError, ReviewRecord, open_log, redact_patterns

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
