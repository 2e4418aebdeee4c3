"""Property: whatever a review log holds, reading it gives records or a SpillGuardError.

JSONL: arbitrary lines (valid JSON of any shape, records and label events with one field
replaced or deleted, invalid JSON, deep nesting, huge numbers, random bytes). SQLite: arbitrary
rows inserted directly into the records table (SQLite's dynamic types: ints, floats, blobs
and text in any column). Reading either yields ReviewRecord objects, warning only with
ReviewLogWarning, or raises a ReviewLogError; never another exception type. And every record
read can be shown, exported, rendered as HTML and written back, since a record that reads
but crashes ``list`` / ``html`` / ``export`` is the same defect one step later.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import warnings
from pathlib import Path

from fuzz_inputs import DELETE, binary, hostile_json_text, json_values, paths_of, replace_at
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spill_guard.cli.review import _csv_row
from spill_guard.review import JsonlSink, ReviewLogError, ReviewLogWarning, ReviewRecord, SqliteSink
from spill_guard.review.html_report import render_html
from spill_guard.review.terminal import printable, render_record

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BASE_RECORD = ReviewRecord(
    id="0123456789abcdef0123456789abcdef", question="q", context="c", answer="a", original_answer="a",
    action="flagged", flagged=True, score=1.0, threshold=0.5, spec="spilled_energy:mean",
    span={"start": 0, "end": 1, "text": "a", "token_start": 0, "token_end": 1}, tokens=["a"], token_scores=[0.5],
    attempts=[{"answer": "a", "score": 1.0, "flagged": True, "strategy": "greedy"}], model="m", tags=["t"],
    metadata={"k": "v"}, label="incorrect", label_note="n", labelled_at="2026-01-01T00:00:00+00:00",
).model_dump()
BASE_LABEL = {"event": "label", "id": BASE_RECORD["id"], "label": "correct", "note": "why",
              "labelled_at": "2026-01-02T00:00:00+00:00"}


# Text with lone surrogates and control characters, which JSON escapes can carry into a log.
awkward_text = st.text(alphabet=st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                                          st.sampled_from("\x1b\x07\x9b\u202e\n\r")), max_size=12)


def mutated(base: dict) -> st.SearchStrategy[dict]:
    """``base`` with one nested element replaced by arbitrary JSON or awkward text, or deleted."""
    return st.builds(lambda path, new: replace_at(base, path, new) if path else ({} if new is DELETE else new),
                     st.sampled_from(list(paths_of(base))), st.one_of(json_values, awkward_text, st.just(DELETE)))


def dumped(value) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


jsonl_lines = st.one_of(
    binary,
    hostile_json_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    json_values.map(dumped),
    mutated(BASE_RECORD).map(dumped),
    mutated(BASE_LABEL).map(dumped),
)


def exercise_consumers(records: list[ReviewRecord]) -> None:
    """What list / show / html / export do with a record must work on every record read."""
    for r in records:
        assert isinstance(r, ReviewRecord)
        render_record(r, mode="256")
        printable(r.question)
        _csv_row(r)
        assert ReviewRecord.from_json(r.to_json()) == r  # writes back exactly
    render_html(records)


def read_or_review_log_error(read) -> list[ReviewRecord]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            records = read()
        except ReviewLogError:
            records = []
    unexpected = [w for w in caught if not issubclass(w.category, ReviewLogWarning)]
    assert not unexpected, [str(w.message) for w in unexpected]
    return records


@FUZZ
@given(st.lists(jsonl_lines, max_size=6), st.booleans())
def test_any_jsonl_lines_read_as_records_or_a_review_log_error(lines, with_good_first):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.jsonl"
        good = ReviewRecord.model_validate({**BASE_RECORD, "id": "good"})
        path.write_bytes(b"\n".join(([good.to_json().encode()] if with_good_first else []) + lines))
        sink = JsonlSink(path, fsync=False)
        records = read_or_review_log_error(sink.records)
        exercise_consumers(records)
        if with_good_first and b"\x00SQLite format 3" not in b"\x00" + path.read_bytes()[:16]:
            assert any(r.created_at == good.created_at for r in records) or len(records) >= 1
        if records:  # labelling still works after the junk
            labelled = read_or_review_log_error(lambda: [sink.set_label(records[-1].id, "correct", note="x")])
            exercise_consumers(labelled)


sql_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
sql_values = st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), st.floats(), sql_text, st.binary(max_size=12))
sql_not_null = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False), sql_text,
                         st.binary(max_size=12))
row_data = st.one_of(
    sql_not_null,
    jsonl_lines.map(lambda b: b.decode("utf-8", "replace").replace("\ufffd", "?")),
    jsonl_lines,
    mutated(BASE_RECORD).map(lambda d: json.dumps(d, ensure_ascii=True)),
)
rows = st.fixed_dictionaries({
    "id": st.one_of(sql_not_null, st.just(BASE_RECORD["id"])), "created_at": sql_not_null, "action": sql_not_null,
    "flagged": sql_not_null, "score": sql_values, "label": st.one_of(sql_values, st.sampled_from(["correct", "incorrect"])),
    "label_note": sql_values, "labelled_at": sql_values, "data": row_data,
})


@pytest.fixture(scope="module")
def sqlite_log(tmp_path_factory):
    """One database for all examples (emptied by each): creating a WAL database per example
    would cost most of the time budget in file creation and fsyncs."""
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.sqlite"
    with SqliteSink(path, fsync=False) as sink:
        sink.write(ReviewRecord.model_validate(BASE_RECORD))  # creates the schema
        yield sink


@FUZZ
@given(drawn_rows=st.lists(rows, max_size=5), prefix=sql_text)
def test_any_sqlite_rows_read_as_records_or_a_review_log_error(sqlite_log, drawn_rows, prefix):
    sink = sqlite_log
    conn = sqlite3.connect(sink.path)
    with conn:
        conn.execute("DELETE FROM records")
    sink.write(ReviewRecord.model_validate({**BASE_RECORD, "id": "good"}))
    with conn:
        for row in drawn_rows:
            conn.execute(f"INSERT OR REPLACE INTO records ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                         tuple(row.values()))
    conn.close()
    records = read_or_review_log_error(sink.records)
    exercise_consumers(records)
    exercise_consumers(read_or_review_log_error(lambda: [sink.get(prefix or "g")]))
    if records:
        exercise_consumers(read_or_review_log_error(lambda: [sink.set_label(records[0].id, "incorrect")]))
