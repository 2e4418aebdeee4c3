"""PostgresSink on a real PostgreSQL server on loopback (started by tests/postgres_support.py).

The sink contract tests of test_review_sinks.py run here too, on PostgreSQL (imported below,
with this module's ``sink`` fixture); the rest checks what is PostgreSQL's own: the raw
tables, indexed prefix lookup, many processes x threads, foreign rows, fork, dropped
connections, a server that is down, the review CLI on a URL, and a guard on the real model.
"""

from __future__ import annotations

import csv
import gc
import json
import pickle
import sys
import threading
import traceback
import warnings

import pytest

pytest.importorskip("psycopg", reason="needs: pip install 'spill-guard[postgres]'")

import psycopg  # noqa: E402
from postgres_support import free_port  # noqa: E402
from test_review_concurrency import FORK, assert_complete, make_record  # noqa: E402
from test_review_sinks import (  # noqa: E402,F401  (the shared sink contract, collected here on PostgreSQL)
    record,
    test_bad_label_is_a_clear_error,
    test_closed_sinks_reopen_on_use,
    test_prefix_lookup_unknown_and_ambiguous_ids,
    test_records_round_trip_exactly_and_keep_write_order,
    test_rewriting_an_id_replaces_the_record,
    test_write_rejects_anything_but_a_record,
)

from spill_guard.cli.main import main  # noqa: E402
from spill_guard.errors import SpillGuardError  # noqa: E402
from spill_guard.review import (  # noqa: E402
    ReviewLogError,
    ReviewLogWarning,
    as_sink,
    labelled_records,
    open_log,
    redact_patterns,
)
from spill_guard.review.errors import NotAReviewLogError, ReviewLogReadError, ReviewLogWriteError  # noqa: E402
from spill_guard.review.postgres_sink import PostgresNotInstalledError, PostgresSink  # noqa: E402

PASSWORD = "s3cr3t-Pw"


@pytest.fixture
def sink(postgres_log_url):
    with open_log(postgres_log_url) as s:
        yield s


def sql(server, query: str, params: tuple = ()) -> list[tuple]:
    """Run ``query`` on the test database over a connection of its own (autocommit)."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@")  # trust auth: the password is ignored


def test_open_log_and_as_sink_take_postgres_urls_and_never_show_the_password():
    for scheme in ("postgresql", "postgres", "PostgreSQL"):
        log = open_log(f"{scheme}://guard:{PASSWORD}@db.example:5433/reviews#prod_log")
        assert isinstance(log, PostgresSink) and log.table == "prod_log"
        assert PASSWORD not in repr(log) and PASSWORD not in log.location and ":***@" in log.location
    assert isinstance(as_sink(f"postgresql://guard:{PASSWORD}@db.example/reviews"), PostgresSink)
    assert open_log("postgresql://db.example/reviews").table == "spill_guard_review"
    assert PASSWORD not in repr(open_log(f"postgresql://db.example/reviews?password={PASSWORD}&sslmode=require"))
    with pytest.raises(ReviewLogError, match=r"'Bad-Name'.*lowercase"):
        open_log("postgresql://db.example/reviews#Bad-Name")


def test_missing_table_reads_as_empty_and_is_created_on_first_write(sink, postgres_server):
    assert sink.records() == [] and sink.count() == 0
    assert sql(postgres_server, "SELECT to_regclass(%s)", (sink.table,)) == [(None,)]  # reading created nothing
    r = record()
    assert sink.write(r) == r.id
    assert sink.records() == [r] and sink.count() == 1
    assert sql(postgres_server, "SELECT version FROM spill_guard_schema WHERE log_table = %s", (sink.table,)) == [(1,)]


def test_labels_are_appended_events_and_the_latest_wins(sink, postgres_server, postgres_log_url):
    a, b = record("a"), record("b")
    sink.write(a)
    sink.write(b)
    labelled = sink.set_label(a.id, "incorrect", note="it is Paris")
    assert (labelled.label, labelled.label_note) == ("incorrect", "it is Paris") and labelled.labelled_at
    sink.set_label(a.id[:6], "correct")
    assert (sink.get(a.id).label, sink.get(a.id).label_note) == ("correct", None)
    assert sink.get(b.id).label is None
    assert [r.id for r in sink.labelled()] == [a.id]
    assert [r.label for r in labelled_records(postgres_log_url)] == ["correct"]  # by URL too
    events = sql(postgres_server, f"SELECT record_id, label, note FROM {sink.table}_labels ORDER BY seq")
    assert events == [(a.id, "incorrect", "it is Paris"), (a.id, "correct", None)]
    assert sql(postgres_server, f"SELECT label FROM {sink.table} WHERE id = %s", (a.id,)) == [("correct",)]


def test_text_postgres_cannot_hold_round_trips_through_the_json(sink):
    odd = record("NUL \x00 and a lone surrogate \udcff", metadata={"k": "\x00"})
    sink.write(odd)
    assert sink.get(odd.id) == odd
    assert sink.set_label(odd.id, "correct", note="has \x00 in it").label_note == "has \\u0000 in it"


def test_prefix_lookup_is_an_index_range_scan_and_wildcards_are_literal(sink, postgres_server):
    sink.write(record("underscore", id="a_b1"))
    sink.write(record("x", id="axb2"))
    assert sink.get("a_b").question == "underscore"  # '_' is not LIKE's any-character here
    with pytest.raises(SpillGuardError, match="no record"):
        sink.get("a%")
    with psycopg.connect(postgres_server.url) as conn:
        conn.execute("SET enable_seqscan = off")  # a plan that still scans the table has no usable index
        plan = " ".join(row[0] for row in conn.execute(
            f"EXPLAIN SELECT id FROM {sink.table} WHERE id LIKE %s ESCAPE '\\'", ("a\\_b%",)))
    assert f"{sink.table}_pkey" in plan and "Seq Scan" not in plan, plan


def test_redaction_never_reaches_the_tables(postgres_log_url, postgres_server):
    with open_log(postgres_log_url, redact=redact_patterns()) as log:
        r = record("Mail me at jane.doe@example.com", answer="Call 555-123-4567.", original_answer="Call 555-123-4567.",
                   tokens=["Call", " 555", "-123", "-4567", "."], token_scores=[0.1, 0.2, 0.3, 0.4, 0.5])
        log.write(r)
        log.set_label(r.id, "incorrect", note="user jane.doe@example.com complained")
        stored = log.get(r.id)
        table = log.table
    assert stored.question == "Mail me at [REDACTED]" and stored.tokens == ["Call", " [REDACTED]", "", "", "."]
    raw = json.dumps(sql(postgres_server, f"SELECT t::text FROM {table} t")
                     + sql(postgres_server, f"SELECT l::text FROM {table}_labels l"))
    assert "[REDACTED]" in raw
    # The phone number's pieces as tokens carried them (a bare "4567" can occur in a stored timestamp's microseconds).
    for fragment in ("jane.doe", " 555", "-123", "-4567"):
        assert fragment not in raw, fragment


def _threads_writing(url: str, process: int, threads: int, per_thread: int) -> None:
    with open_log(url, fsync=False) as log:
        errors: list[BaseException] = []

        def write(t: int) -> None:
            try:
                for i in range(per_thread):
                    log.write(make_record(process * threads + t, i))
            except BaseException as exc:  # surfaced through the exit code
                errors.append(exc)

        pool = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    if errors:
        print(repr(errors[0]), file=sys.stderr)
        sys.exit(1)


def test_four_processes_of_eight_threads_lose_and_duplicate_nothing(postgres_log_url):
    # The table does not exist yet: the 32 first writes also race to create it.
    procs = [FORK.Process(target=_threads_writing, args=(postgres_log_url, p, 8, 25)) for p in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with open_log(postgres_log_url) as log:
        records = log.records()
        assert log.count() == 800
    assert_complete(records, 32, 25)
    assert len({r.id for r in records}) == 800


def test_concurrent_labels_leave_columns_and_events_agreeing(sink, postgres_server):
    r = record()
    sink.write(r)
    labels = ["correct", "incorrect"] * 20

    def label(i: int) -> None:
        sink.set_label(r.id, labels[i], note=str(i))

    pool = [threading.Thread(target=label, args=(i,)) for i in range(len(labels))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    events = sql(postgres_server, f"SELECT label, note FROM {sink.table}_labels ORDER BY seq")
    assert len(events) == 40
    got = sink.get(r.id)
    assert (got.label, got.label_note) == events[-1]  # the row's label is the last event's


def _write_and_close(log: PostgresSink) -> None:
    for i in range(20):
        log.write(make_record(1, i))
    log.close()  # must close only the child's own connection


def test_a_sink_used_before_fork_keeps_the_parents_connection(sink):
    sink.write(make_record(0, 0))
    before = sink._connection()  # the parent's connection (private: what this test is about)
    child = FORK.Process(target=_write_and_close, args=(sink,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    sink.write(make_record(0, 1))
    assert sink._connection() is before and not before.broken
    assert len(sink.records()) == 22


def test_malformed_rows_are_skipped_with_a_warning(sink, postgres_server):
    good, other = record("good"), record("other")
    sink.write(good)
    t = sink.table
    for rid, data in [("bad1", "not json"), ("bad2", "[1, 2]"), ("bad3", '{"question": 1}'), ("bad4", other.to_json())]:
        sql(postgres_server, f"INSERT INTO {t} (id, created_at, action, flagged, data) VALUES (%s, '', 'passed', false, %s)",
            (rid, data))
    sql(postgres_server, f"UPDATE {t} SET label = 'maybe' WHERE id = %s", (good.id,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sink.records() == [good]  # the bad label is ignored, the record kept
    messages = [str(w.message) for w in caught if issubclass(w.category, ReviewLogWarning)]
    assert len(messages) == 5, messages
    assert sum("not a valid record" in m for m in messages) == 3 and sum("is not its record's id" in m for m in messages) == 1
    assert all(t in m and "***" not in m for m in messages)


def test_a_newer_schema_or_a_foreign_table_is_refused(sink, postgres_server):
    sink.write(record())
    sql(postgres_server, "UPDATE spill_guard_schema SET version = 2 WHERE log_table = %s", (sink.table,))
    newer = PostgresSink(postgres_server.url, table=sink.table)
    with pytest.raises(ReviewLogError, match=r"schema version 2.*upgrade"):
        newer.records()
    with pytest.raises(ReviewLogWriteError, match="schema version 2"):
        newer.write(record())
    sql(postgres_server, "CREATE TABLE someone_elses (id integer, name text)")
    foreign = open_log(f"{postgres_server.url}#someone_elses")
    with pytest.raises(NotAReviewLogError, match=r"'someone_elses'.*not a review log"):
        foreign.records()
    with pytest.raises(ReviewLogWriteError, match="not a review log"):
        foreign.write(record())
    assert sql(postgres_server, "SELECT count(*) FROM someone_elses") == [(0,)]


def test_a_connection_the_server_dropped_is_replaced(sink, postgres_server):
    sink.write(record("before"))
    killed = sql(postgres_server, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE application_name = 'spill_guard' AND datname = current_database()")
    assert killed and all(ok for (ok,) in killed)
    sink.write(record("after"))
    assert [r.question for r in sink.records()] == ["before", "after"]


def test_server_down_is_a_clear_error_without_the_password(capsys):
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/db"  # nothing listens there
    log = open_log(url, connect_timeout=2)
    with pytest.raises(ReviewLogWriteError) as written:
        log.write(record())
    with pytest.raises(ReviewLogReadError) as read:
        log.records()
    for info in (written, read):
        text = "".join(traceback.format_exception(info.value))  # the chained causes too
        assert isinstance(info.value, OSError) and PASSWORD not in text
        assert "postgres:***@127.0.0.1" in str(info.value) and "server is running" in str(info.value)
    assert main(["review", "list", "--log", url]) == 2
    err = capsys.readouterr().err
    assert "could not read the review log" in err and PASSWORD not in err
    # libpq quotes the part of a URL it cannot parse: here, the password itself.
    with pytest.raises(ReviewLogWriteError) as bad_url:
        open_log(f"postgresql://postgres:{PASSWORD}%zz@127.0.0.1:1/db").write(record())
    assert PASSWORD not in "".join(traceback.format_exception(bad_url.value)) and "percent-encoded" in str(bad_url.value)


def test_without_psycopg_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what `import psycopg` sees when it is not installed
    log = open_log("postgresql://127.0.0.1/db")  # opening needs no driver yet
    for call in (lambda: log.write(record()), log.records):
        with pytest.raises(PostgresNotInstalledError, match=r"pip install 'spill-guard\[postgres\]'") as info:
            call()
        assert isinstance(info.value, ImportError) and isinstance(info.value, SpillGuardError)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_review_cli_on_a_postgres_url(postgres_log_url, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    url = with_password(postgres_log_url)
    written = [record(f"question {i}", id=f"{i:02d}" + "cd" * 15, action="flagged" if i else "passed", flagged=bool(i))
               for i in range(3)]
    with open_log(url) as log:
        for r in written:
            log.write(r)
    code, out, _ = run(capsys, "review", "list", "--log", url)
    assert code == 0 and out.splitlines()[-1] == "3 record(s)" and "01cdcdcd" in out
    assert run(capsys, "review", "list", "--log", url, "--flagged")[1].splitlines()[-1] == "2 record(s)"
    code, out, _ = run(capsys, "review", "label", "--log", url, "01cd", "incorrect", "--note", "made up")
    assert code == 0 and out.strip() == f"{written[1].id}: incorrect (made up)"
    monkeypatch.setenv("SPILL_GUARD_LOG", url)
    assert "01cdcdcd" not in run(capsys, "review", "list", "--unlabelled")[1]
    code, out, _ = run(capsys, "review", "show", "02", "--json")
    assert code == 0 and json.loads(out)["question"] == "question 2"
    assert run(capsys, "review", "export", "--format", "jsonl", "-o", str(tmp_path / "all.jsonl"))[0] == 0
    exported = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [e["id"] for e in exported] == [r.id for r in written] and exported[1]["label"] == "incorrect"
    assert run(capsys, "review", "export", "--format", "csv", "--labelled-only", "-o", str(tmp_path / "l.csv"))[0] == 0
    with (tmp_path / "l.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["id"], r["label"], r["label_note"]) for r in rows] == [(written[1].id, "incorrect", "made up")]
    code, _, err = run(capsys, "review", "html", "-o", str(tmp_path / "r.html"))
    assert code == 0 and "wrote 3 record(s)" in err
    html = (tmp_path / "r.html").read_text()
    assert "question 2" in html and PASSWORD not in html
    code, _, err = run(capsys, "review", "show", "zz")
    assert code == 2 and "no record" in err and PASSWORD not in err


@pytest.mark.model
def test_guard_on_the_real_model_logs_to_postgres(spill_model, postgres_log_url):
    from spill_guard import SpillGuard

    with SpillGuard(spill_model, threshold=100.0, log=postgres_log_url, max_new_tokens=12) as guard:
        assert isinstance(guard.sink, PostgresSink)
        verdicts = guard.ask_batch(["What is the capital of France?", "What is 2 + 2?"])
    with open_log(postgres_log_url) as log:
        records = log.records()
    assert [r.id for r in records] == [v.record_id for v in verdicts]
    for r, v in zip(records, verdicts):
        assert (r.question, r.answer, r.score, r.action) == (v.question, v.answer, v.score, v.action.value)
        assert r.tokens == list(v.tokens) and r.scored is not None  # re-scorable later


def test_a_thread_that_ends_closes_its_connection(sink):
    sink.write(record("main thread"))
    used = []

    def write_once(i: int) -> None:
        sink.write(record(f"thread {i}"))
        used.append(sink._connection())  # this thread's connection (private: what this test is about)

    for i in range(5):  # one after another, like a pool whose idle workers exit
        t = threading.Thread(target=write_once, args=(i,))
        t.start()
        t.join()
    gc.collect()
    assert len(used) == 5 and all(conn.closed for conn in used)
    assert not sink._connection().closed  # the main thread's, still in use
    assert len(sink.records()) == 6


def test_a_read_only_reviewer_can_list_but_not_label(sink, postgres_server, capsys):
    r = record()
    sink.write(r)
    sql(postgres_server, "DO $$ BEGIN CREATE ROLE reviewer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    sql(postgres_server, f"GRANT SELECT ON {sink.table}, {sink.table}_labels, spill_guard_schema TO reviewer")
    url = f"postgresql://reviewer@{postgres_server.host}:{postgres_server.port}/{postgres_server.database}#{sink.table}"
    code, out, _ = run(capsys, "review", "list", "--log", url)
    assert code == 0 and out.splitlines()[-1] == "1 record(s)"
    code, _, err = run(capsys, "review", "label", "--log", url, r.id[:8], "correct")
    assert code == 2 and "could not write the label" in err and "grant this user" in err
    assert sink.get(r.id).label is None


def test_a_pickled_sink_reconnects_where_it_is_unpickled(sink):
    sink.write(record("before"))
    copy = pickle.loads(pickle.dumps(sink))  # what a process pool or a Ray replica receives
    assert (copy.location, copy.table, copy.fsync) == (sink.location, sink.table, sink.fsync)
    copy.write(record("after"))
    assert [r.question for r in sink.records()] == ["before", "after"]
    copy.close()
