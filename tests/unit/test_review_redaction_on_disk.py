"""Issue 11 item 2: nothing a sink writes bypasses its redactor. Checked on the raw bytes on disk:
the JSONL file, and the SQLite database with its -wal file (read while the sink is open, when
the commits still sit in the WAL, and after close, when they are checkpointed into the db)."""

from __future__ import annotations

import re

import pytest

from spill_guard.review import ReviewRecord, open_log, redact_patterns

SECRET = r"SECRET-\d{4}"
PII = ("555-123-4567", "bob@example.org")


def disk_bytes(path) -> bytes:
    """The log file plus its SQLite side files, as stored."""
    files = [path] + [path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def record_with_secrets() -> ReviewRecord:
    s = "SECRET-1234"
    return ReviewRecord(
        question=f"q {s}", context=f"c {s}", answer=f"a {s}", original_answer=f"a {s}", action="flagged",
        flagged=True, score=1.0, spec="spilled_energy:mean", locator=f"loc {s}", model=f"model {s}",
        span={"start": 0, "end": 1, "text": s}, tokens=["a", " SECRET", "-12", "34"], token_scores=[0.0] * 4,
        attempts=[{"answer": s, "score": 1.0, "flagged": True, "strategy": f"greedy {s}"}], tags=[f"t {s}"],
        metadata={f"key {s}": {f"nested {s}": [f"v {s}"]}}, label="incorrect", label_note=f"n {s}",
    )


@pytest.fixture(params=[".jsonl", ".sqlite"])
def log_path(request, tmp_path):
    return tmp_path / f"log{request.param}"


def test_label_note_bypassed_the_redactor(log_path):
    with open_log(log_path, redact=redact_patterns()) as sink:
        r = ReviewRecord(question="q", answer="a", original_answer="a", action="passed", flagged=False,
                         score=0.1, spec="s")
        sink.write(r)
        labelled = sink.set_label(r.id[:6], "incorrect", note="caller was bob@example.org, 555-123-4567")
        assert labelled.label_note == "caller was [REDACTED], [REDACTED]"
        on_disk = disk_bytes(log_path)  # the SQLite commits are still in the -wal file here
        assert all(p.encode() not in on_disk for p in PII)
        assert sink.get(r.id).label_note == "caller was [REDACTED], [REDACTED]"
    assert all(p.encode() not in disk_bytes(log_path) for p in PII)


def test_metadata_keys_were_not_redacted(log_path):
    with open_log(log_path, redact=redact_patterns()) as sink:
        r = ReviewRecord(question="q", answer="a", original_answer="a", action="passed", flagged=False,
                         score=0.1, spec="s", metadata={"bob@example.org": {"555-123-4567": "x"}})
        sink.write(r)
        assert b"bob@example" not in disk_bytes(log_path) and b"-4567" not in disk_bytes(log_path)
        [stored] = sink.records()
    assert stored.metadata == {"[REDACTED]": {"[REDACTED]": "x"}}
    assert b"bob@example" not in disk_bytes(log_path) and b"-4567" not in disk_bytes(log_path)


def test_every_text_field_and_label_event_is_redacted_on_disk(log_path):
    with open_log(log_path, redact=redact_patterns([SECRET], scored="drop")) as sink:
        r = record_with_secrets()
        sink.write(r)
        sink.set_label(r.id, "correct", note="again SECRET-9876")
        assert re.search(rb"SECRET-\d", disk_bytes(log_path)) is None
        stored = sink.get(r.id)
    assert re.search(rb"SECRET-\d", disk_bytes(log_path)) is None
    assert stored.label_note == "again [REDACTED]" and stored.model == "model [REDACTED]"
    assert stored.tokens == ["a", " [REDACTED]", "", ""]  # one token per score kept


def test_redacted_metadata_keys_that_collide_keep_both_values():
    r = ReviewRecord(question="q", answer="a", original_answer="a", action="passed", flagged=False, score=0.1,
                     spec="s", metadata={"bob@example.org": 1, "amy@example.org": 2, "[REDACTED] (2)": 3})
    metadata = redact_patterns()(r).metadata
    assert sorted(metadata.values()) == [1, 2, 3] and "bob@" not in str(metadata) and "amy@" not in str(metadata)
    assert metadata["[REDACTED]"] == 1 and metadata["[REDACTED] (2)"] == 2


def test_a_redact_hook_that_returns_no_record_is_a_clear_error(tmp_path):
    from spill_guard.review.errors import NotARecordError

    with open_log(tmp_path / "x.jsonl", redact=lambda record: None) as sink:
        with pytest.raises(NotARecordError, match="redact hook returned NoneType"):
            sink.write(record_with_secrets())
    assert not (tmp_path / "x.jsonl").exists()
