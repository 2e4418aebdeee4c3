"""Issue 11 item 6 (sink side): a log that cannot store a record raises ReviewLogWriteError (a
ReviewLogError and an OSError) naming the log, the cause and the fix, with the cause chained;
text the encoder cannot take (lone surrogates) is stored exactly instead of refused.

Full disk and read-only filesystem use a real small tmpfs (tests/tmpfs_support.py; skipped
where mounting is not allowed)."""

from __future__ import annotations

import errno
import sqlite3
import warnings

import pytest
from tmpfs_support import mounted_tmpfs, remount_read_only

from spill_guard.review import ReviewLogError, ReviewLogWriteError, ReviewRecord, open_log

SUFFIXES = [".jsonl", ".sqlite"]


def record(i: int = 0, **kw) -> ReviewRecord:
    base = dict(question=f"question {i} " + "x" * 200, answer="a", original_answer="a", action="passed",
                flagged=False, score=0.1, threshold=0.5, spec="s", tokens=["a"], token_scores=[0.1])
    base.update(kw)
    return ReviewRecord(**base)


@pytest.fixture
def tmpfs(tmp_path):
    with mounted_tmpfs(tmp_path / "mnt", size="256k") as where:
        yield where


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_full_disk_raised_a_raw_os_error_and_earlier_records_stay_readable(tmpfs, suffix):
    path = tmpfs / f"log{suffix}"
    written = []
    with open_log(path) as sink:
        with pytest.raises(ReviewLogWriteError) as info:
            for i in range(10_000):  # 256 kB fill up long before this
                written.append(sink.write(record(i)))
        error = info.value
        assert written, "the disk was full before the first record"
        assert isinstance(error, OSError) and isinstance(error, ReviewLogError)
        assert str(path) in str(error) and "free space" in str(error)
        assert isinstance(error.__cause__, (OSError, sqlite3.Error))
        if suffix == ".jsonl":
            assert error.errno == errno.ENOSPC
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no torn line left behind: nothing to skip
            assert [r.id for r in sink.records()] == written
    with open_log(path) as reopened:  # and after closing, from a fresh connection
        assert [r.id for r in reopened.records()] == written


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_read_only_log_raised_a_raw_os_error(tmpfs, suffix):
    path = tmpfs / f"log{suffix}"
    first = record(1)
    with open_log(path) as sink:
        sink.write(first)
    remount_read_only(tmpfs)
    with open_log(path) as sink:
        with pytest.raises(ReviewLogWriteError, match=r"read-only: choose a log path on a writable filesystem") as info:
            sink.write(record(2))
        assert str(path) in str(info.value) and info.value.__cause__ is not None
        with pytest.raises(ReviewLogWriteError, match="could not write the label"):
            sink.set_label(first.id, "correct", note="n")
        assert sink.records() == [first]  # a read-only log still reads


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_unencodable_metadata_raised_unicode_encode_error(tmp_path, suffix):
    # Lone surrogates: what Python makes of bytes that were not UTF-8 (argv, os.listdir, ...).
    r = record(question="caf\udce9 au lait", metadata={"k\udcff": "v\ud800", "n": [1, "\udfff"]},
               tokens=["\udcff"], token_scores=[0.5])
    path = tmp_path / f"log{suffix}"
    with open_log(path) as sink:
        sink.write(r)
        sink.set_label(r.id, "incorrect", note="bytes \udcfe from the shell")
        got = sink.get(r.id)
    assert got.question == r.question and got.metadata == r.metadata and got.tokens == r.tokens
    assert got.label_note == "bytes \udcfe from the shell"  # stored exactly, nothing lost
    if suffix == ".jsonl":
        path.read_bytes().decode("utf-8")  # the file itself is valid UTF-8 (JSON \\udcff escapes)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_value_json_cannot_write_is_a_write_error_not_a_value_error(tmp_path, suffix):
    path = tmp_path / f"log{suffix}"
    with open_log(path) as sink:
        with pytest.raises(ReviewLogWriteError, match="JSON cannot store") as info:
            sink.write(record(metadata={"huge": 10**5000}))
        assert isinstance(info.value.__cause__, ValueError)
        sink.write(record(1))
        assert len(sink.records()) == 1


def test_sqlite_lock_held_past_the_timeout_is_a_write_error_naming_the_fix(tmp_path):
    path = tmp_path / "log.sqlite"
    with open_log(path) as sink:
        sink.write(record(0))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with open_log(path, timeout=0.2) as sink:
            with pytest.raises(ReviewLogWriteError, match="raise timeout="):
                sink.write(record(1))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with open_log(path) as sink:  # the failed transaction left nothing behind
        sink.write(record(2))
        assert [r.question[:10] for r in sink.records()] == ["question 0", "question 2"]


def test_jsonl_parent_that_is_a_file_is_a_write_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReviewLogWriteError, match="not a folder|exists") as info:
        open_log(tmp_path / "file" / "log.jsonl").write(record())
    assert isinstance(info.value.__cause__, OSError)
