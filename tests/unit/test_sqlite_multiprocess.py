"""A SQLite review log shared by several processes keeps every record it acknowledged.

The scenario of a guarded server with several worker processes: each process writes from
threads that come and go (so new connections are opened while others of the same process
are in use), while another process opens the log, reads it and closes it again and again
(a dashboard, ``review list``), and ``review label`` runs. SQLite's WAL mode relies on
POSIX locks that a process loses as soon as it closes *any* descriptor of the database
file; a process that lost them lets a closing reader checkpoint and delete the -wal file
under the writers, and their later commits vanish although ``write`` returned an id.

The workers are separate processes: one fresh interpreter (this file run as a script)
imports spill_guard once and forks one process per role while it is still single-threaded
(one import of torch instead of one per worker, and nothing inherited from pytest). A "go"
file releases them together once all are ready, so start-up time does not decide what
overlaps.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

WRITERS = 2  # processes
THREADS = 4  # fresh threads per writer and round: each opens its own connection
ROUNDS = 24
WRITES = 5  # per thread and round -> 2 x 24 x 4 x 5 = 960 records
START_TIMEOUT = 90.0  # seconds for the workers to start (spill_guard imports torch; a loaded 2-core machine)
RUN_TIMEOUT = 90.0  # seconds for the writers once released
_STARTED = time.monotonic()


def make_record(writer: int, n: int):
    from spill_guard.review import ReviewRecord

    return ReviewRecord(
        question=f"q {writer}/{n}", answer="a", original_answer="a", action="passed", flagged=False,
        score=0.01 * n, threshold=1.0, spec="spilled_energy:mean", tokens=["a"], token_scores=[0.5],
        metadata={"writer": writer, "n": n},
    )


# -- the workers (processes forked by host(), below) ------------------------------------------
def _wait_for_go(work: Path, name: str) -> None:
    (work / f"ready-{name}").touch()
    deadline = time.monotonic() + START_TIMEOUT
    while not (work / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: never released")
        time.sleep(0.01)


def _wait_for(work: Path, *markers: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while not all((work / m).exists() for m in markers):
        if time.monotonic() > deadline:
            raise SystemExit(f"never saw {markers}")
        time.sleep(0.01)


def _stopped(work: Path) -> bool:
    return (work / "stop").exists() or time.monotonic() > _STARTED + START_TIMEOUT + RUN_TIMEOUT


def _finish(work: Path, name: str, result: dict) -> None:
    (work / f"result-{name}.json").write_text(json.dumps(result))


def writer(log: Path, work: Path, w: int) -> None:
    from spill_guard.review import SqliteSink

    sink = SqliteSink(log, fsync=False)
    _wait_for_go(work, f"writer{w}")
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def write(t: int, r: int) -> None:
        for i in range(WRITES):
            n = (r * THREADS + t) * WRITES + i
            try:
                got = sink.write(make_record(w, n))
            except Exception as exc:  # reported to the test below
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return
            with lock:
                ids.append(got)

    for r in range(ROUNDS):
        if r == ROUNDS // 2:  # the second half overlaps a finished read pass and label, whatever the timing
            _wait_for(work, "read", "labelled")
        threads = [threading.Thread(target=write, args=(t, r)) for t in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    sink.close()
    _finish(work, f"writer{w}", {"ids": ids, "errors": errors})


def reader(log: Path, work: Path) -> None:
    from spill_guard.review import SqliteSink

    _wait_for_go(work, "reader")
    passes, errors = 0, []
    while not _stopped(work):
        sink = SqliteSink(log)
        try:
            sink.records()
            sink.count()
            (work / "read").touch()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            sink.close()
        passes += 1
    _finish(work, "reader", {"passes": passes, "errors": errors})


def labeller(log: Path, work: Path) -> None:
    """``spill-guard review label`` (its entry point, in this interpreter) on records as they appear."""
    from spill_guard.cli.main import main
    from spill_guard.review import SqliteSink

    _wait_for_go(work, "labeller")
    rng = random.Random(19)
    labels: dict[str, str] = {}
    errors: list[str] = []
    while not _stopped(work):
        sink = SqliteSink(log)
        try:
            todo = [r.id for r in sink.records() if r.id not in labels] if log.exists() else []
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            todo = []
        finally:
            sink.close()
        if not todo:
            time.sleep(0.02)
            continue
        record_id, label = rng.choice(todo), rng.choice(["correct", "incorrect"])
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["review", "label", "--log", str(log), record_id, label, "--note", "stress"])
        if rc == 0:
            labels[record_id] = label
            (work / "labelled").touch()
        else:
            errors.append(f"review label exited {rc}: {err.getvalue().strip()}")
    _finish(work, "labeller", {"labels": labels, "errors": errors})


ROLES = {**{f"writer{w}": (writer, w) for w in range(WRITERS)}, "reader": (reader,), "labeller": (labeller,)}


def host(log: Path, work: Path) -> None:
    """Import once, then fork one process per role and wait for them; exit 1 if any failed."""
    import traceback

    import spill_guard.cli.main  # noqa: F401 (imported here, once, for every role)
    import spill_guard.review  # noqa: F401

    assert threading.active_count() == 1, "forking needs a single-threaded parent"
    children = {}
    for name, (role, *args) in ROLES.items():
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                out = os.open(work / f"{name}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(out, 1)
                os.dup2(out, 2)
                role(log, work, *args)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)  # never back into the host's code; skips tearing down torch
        children[pid] = name
    failed = []
    for _ in children:
        pid, status = os.wait()
        if os.waitstatus_to_exitcode(status) != 0:
            failed.append(children[pid])
    if failed:
        raise SystemExit(f"failed: {failed}")


# -- the test ---------------------------------------------------------------------------------
def _wait_until(condition, timeout: float, what: str, proc: subprocess.Popen, work: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the workers ended while {what}:\n" + _outputs(work)
        assert time.monotonic() < deadline, f"timed out while {what}:\n" + _outputs(work)
        time.sleep(0.05)


def _outputs(work: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(work.glob("*.out")))


def test_processes_writing_reading_and_labelling_one_sqlite_log_lose_nothing(tmp_path):
    log, work = tmp_path / "log.sqlite", tmp_path / "work"
    work.mkdir()
    with open(work / "host.out", "wb") as out:
        proc = subprocess.Popen([sys.executable, __file__, str(log), str(work)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: the forked workers with it
        try:
            _wait_until(lambda: all((work / f"ready-{n}").exists() for n in ROLES), START_TIMEOUT,
                        "starting", proc, work)
            (work / "go").touch()
            _wait_until(lambda: all((work / f"result-writer{w}.json").exists() for w in range(WRITERS)),
                        RUN_TIMEOUT, "writing", proc, work)
            (work / "stop").touch()
            proc.wait(timeout=60)
        finally:
            (work / "stop").touch()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the host and the workers it forked
                proc.wait()
    assert proc.returncode == 0, _outputs(work)

    results = {n: json.loads((work / f"result-{n}.json").read_text()) for n in ROLES}
    acknowledged = [i for w in range(WRITERS) for i in results[f"writer{w}"]["ids"]]
    from spill_guard.review import SqliteSink

    with SqliteSink(log) as sink:
        stored = {r.id: r for r in sink.records()}
    missing = set(acknowledged) - set(stored)
    errors = {n: dict(Counter(r["errors"])) for n, r in results.items() if r["errors"]}  # message: how often
    assert (errors, len(missing)) == ({}, 0), (
        f"{len(missing)} of {len(acknowledged)} acknowledged records are not in the log; errors: {errors}")
    assert len(acknowledged) == len(set(acknowledged)) == len(stored) == WRITERS * ROUNDS * THREADS * WRITES
    assert results["reader"]["passes"] > 0 and results["labeller"]["labels"]  # they ran alongside
    for record_id, label in results["labeller"]["labels"].items():
        assert (stored[record_id].label, stored[record_id].label_note) == (label, "stress")
    conn = sqlite3.connect(log)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


# -- the same failure, deterministic and in one process ----------------------------------------
_COUNT_AND_CLOSE = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                    "print(c.execute('SELECT count(*) FROM records').fetchone()[0]); c.close()")


def _other_process_reads_and_closes(log: Path) -> int:
    """Another process (plain ``sqlite3``: a dashboard, the ``sqlite3`` shell) opens the log, counts, closes."""
    done = subprocess.run([sys.executable, "-c", _COUNT_AND_CLOSE, str(log)], capture_output=True, text=True,
                          timeout=60, check=True)
    return int(done.stdout)


def _in_new_thread(function):
    """``function()`` in a thread of its own (so through a new connection); its result, or its exception raised here."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_a_new_threads_connection_keeps_the_wal_alive_when_another_process_closes(tmp_path):
    from spill_guard.review import SqliteSink

    log = tmp_path / "log.sqlite"
    wal = log.with_name(log.name + "-wal")
    with SqliteSink(log, fsync=False) as sink:
        ids = [sink.write(make_record(0, 0))]
        ids.append(_in_new_thread(lambda: sink.write(make_record(0, 1))))  # a second connection of this process
        assert _other_process_reads_and_closes(log) == 2
        assert wal.exists()  # the closing process did not take this one's WAL away
        ids.append(sink.write(make_record(0, 2)))
        ids.append(_in_new_thread(lambda: sink.write(make_record(0, 3))))
        assert _other_process_reads_and_closes(log) == 4
    assert _other_process_reads_and_closes(log) == 4
    with SqliteSink(log) as sink:
        assert [r.id for r in sink.records()] == ids


def test_a_wal_deleted_under_the_log_is_not_blamed_on_the_disk(tmp_path):
    from spill_guard.review import ReviewLogWriteError, SqliteSink

    log = tmp_path / "log.sqlite"
    with SqliteSink(log, fsync=False) as sink:
        sink.write(make_record(0, 0))
        os.remove(log.with_name(log.name + "-wal"))  # by hand, while the log is open
        with pytest.raises(ReviewLogWriteError, match="SQLITE_IOERR_SHORT_READ") as info:
            _in_new_thread(lambda: sink.write(make_record(0, 1)))
    assert "-wal file was deleted" in str(info.value)
    assert "the disk reported an I/O error" not in str(info.value)


@pytest.mark.parametrize("content", [b"x", b"{", b"\x00" * 100, b'{"id": "a"}\n'])
def test_a_small_foreign_file_is_refused_and_left_as_it_was(tmp_path, content):
    from spill_guard.review import NotAReviewLogError, ReviewLogWriteError, SqliteSink

    log = tmp_path / "log.sqlite"
    log.write_bytes(content)
    with SqliteSink(log) as sink:
        with pytest.raises(NotAReviewLogError, match="is not a SQLite database"):
            sink.records()
        with pytest.raises(ReviewLogWriteError, match="is not a SQLite database"):
            sink.write(make_record(0, 0))
    assert log.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.sqlite"]  # no -wal, -shm or -journal beside it


if __name__ == "__main__":
    host(Path(sys.argv[1]), Path(sys.argv[2]))
