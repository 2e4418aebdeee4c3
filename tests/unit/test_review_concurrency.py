"""Concurrent writers lose nothing; a writer killed mid-write leaves a readable log.

Both sinks, threads and processes. Processes are forked (Linux): spawning would re-import
torch in every child for nothing.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import warnings

import pytest

from spill_guard.review import JsonlSink, ReviewLogWarning, ReviewRecord, SqliteSink, open_log

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
FORK = multiprocessing.get_context("fork") if hasattr(os, "fork") else None


def make_record(writer: int, i: int, pad: int = 0) -> ReviewRecord:
    return ReviewRecord(
        question=f"q {writer}/{i}", answer="a", original_answer="a", action="passed", flagged=False,
        score=0.1 * i, threshold=1.0, spec="spilled_energy:mean", tokens=["a"], token_scores=[0.5],
        metadata={"writer": writer, "i": i, "pad": "x" * pad},
    )


def assert_complete(records: list[ReviewRecord], writers: int, per_writer: int) -> None:
    seen = {(r.metadata["writer"], r.metadata["i"]) for r in records}
    assert len(records) == writers * per_writer
    assert seen == {(w, i) for w in range(writers) for i in range(per_writer)}


def assert_every_line_parses(path) -> int:
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a newline
    for line in lines[:-1]:
        json.loads(line)
    return len(lines) - 1


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
def test_eight_threads_share_one_sink_without_losing_a_record(tmp_path, suffix):
    path = tmp_path / f"log{suffix}"
    with open_log(path, fsync=False) as sink:
        errors = []

        def writer(w: int) -> None:
            try:
                for i in range(500):
                    sink.write(make_record(w, i))
            except Exception as exc:  # surfaced below: a thread's exception is otherwise lost
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert_complete(sink.records(), 8, 500)
    if suffix == ".jsonl":
        assert assert_every_line_parses(path) == 4000


def _process_writer(path: str, w: int, n: int, pad: int) -> None:
    with open_log(path, fsync=False) as sink:
        for i in range(n):
            sink.write(make_record(w, i, pad))


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
def test_four_processes_append_to_one_log_without_losing_a_record(tmp_path, suffix):
    path = tmp_path / f"log{suffix}"
    # 5 kB records: larger than a pipe buffer, so interleaving would show if locking failed.
    procs = [FORK.Process(target=_process_writer, args=(str(path), w, 200, 5000)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with open_log(path) as sink:
        assert_complete(sink.records(), 4, 200)
    if suffix == ".jsonl":
        assert assert_every_line_parses(path) == 800


def test_a_sink_used_before_fork_gets_its_own_descriptor_in_the_child(tmp_path):
    path = tmp_path / "log.jsonl"
    sink = JsonlSink(path, fsync=False)
    sink.write(make_record(9, 0))  # parent now holds an open descriptor
    child = FORK.Process(target=lambda: [sink.write(make_record(1, i)) for i in range(300)])
    child.start()
    for i in range(300):
        sink.write(make_record(0, i))
    child.join()
    assert child.exitcode == 0
    assert len(sink.records()) == 601
    assert assert_every_line_parses(path) == 601
    sink.close()


def _write_then_die_mid_line(path: str) -> None:
    sink = JsonlSink(path)
    for i in range(5):
        sink.write(make_record(0, i))
    # Exactly what a writer killed inside os.write leaves: half of a line, no newline.
    half = make_record(0, 99).to_json().encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, half[: len(half) // 2])
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.filterwarnings("ignore::spill_guard.review.ReviewLogWarning")  # the torn line, asserted below
def test_writer_killed_mid_line_leaves_a_readable_log_and_later_appends_work(tmp_path):
    path = tmp_path / "log.jsonl"
    child = FORK.Process(target=_write_then_die_mid_line, args=(str(path),))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    assert not path.read_bytes().endswith(b"\n")

    sink = JsonlSink(path)
    with pytest.warns(ReviewLogWarning, match="killed mid-write"):
        assert [r.metadata["i"] for r in sink.records()] == [0, 1, 2, 3, 4]

    later = make_record(1, 0)
    sink.write(later)
    lines = path.read_bytes().split(b"\n")
    assert json.loads(lines[-2])["id"] == later.id  # on a fresh line of its own
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = sink.records()
    assert [r.metadata["i"] for r in records] == [0, 1, 2, 3, 4, 0]
    assert len([w for w in caught if issubclass(w.category, ReviewLogWarning)]) == 1  # the torn line only
    sink.set_label(later.id, "correct")
    assert sink.get(later.id).label == "correct"
    sink.close()


def _write_many(path: str) -> None:
    # Bounded (≈40 MB at most) so a parent that fails before killing it cannot fill the disk.
    with open_log(path, fsync=False) as sink:
        for i in range(20000):
            sink.write(make_record(0, i, pad=2000))


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
def test_real_writer_killed_while_looping_leaves_every_complete_record_readable(tmp_path, suffix):
    path = tmp_path / f"log{suffix}"
    child = FORK.Process(target=_write_many, args=(str(path),), daemon=True)
    child.start()

    def written() -> int:
        if not path.exists():
            return 0
        return sink.count() if suffix == ".sqlite" else path.read_bytes().count(b"\n")

    with open_log(path) as sink:
        try:
            while written() < 50:
                child.join(0.005)
                assert child.exitcode is None, "the writer ended before it could be killed"
        finally:
            if child.exitcode is None:
                os.kill(child.pid, signal.SIGKILL)
            child.join()
        assert child.exitcode == -signal.SIGKILL

        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            records = sink.records()
        indices = [r.metadata["i"] for r in records]
        assert len(indices) >= 50
        assert indices == list(range(len(indices)))  # a gap-free prefix of what was written
        if suffix == ".jsonl":
            complete = path.read_bytes().rsplit(b"\n", 1)[0].split(b"\n")
            assert len(complete) == len(records)
            for line in complete:
                json.loads(line)

        extra = make_record(1, 0)
        sink.write(extra)
        assert sink.get(extra.id).metadata == extra.metadata
        assert len(sink.records()) == len(records) + 1


def test_sqlite_sink_uses_wal_mode(tmp_path):
    import sqlite3

    path = tmp_path / "log.db"
    with SqliteSink(path) as sink:
        sink.write(make_record(0, 0))
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
