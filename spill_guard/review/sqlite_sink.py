"""Review log in a SQLite database (stdlib ``sqlite3``), safe with threads and processes.

Each record is one row: the record as JSON text plus indexed columns for the fields people
filter on (``created_at``, ``action``, ``flagged``, ``score``, ``label``). A label is an
``UPDATE`` of the label columns in its own transaction; the JSON keeps what was written.

Concurrency: the database runs in WAL mode (readers never block the writer), every
connection waits up to ``timeout`` seconds for a lock instead of failing with
"database is locked", and each thread (and each process, after ``fork``) gets its own
connection, because a ``sqlite3.Connection`` must not be shared across threads or forks.

Failures: a write that cannot be stored (read-only file, full disk, lock timeout) is a
:class:`ReviewLogWriteError` and leaves the database as it was (the transaction is rolled
back); a file that is not a SQLite database, or a database of another application, is a
:class:`NotAReviewLogError` before anything is written to it (SQLite itself reads the header;
the sink opens the file itself only once SQLite refused it, because closing a descriptor of
the database would drop this process's WAL locks); a row whose JSON is not a record is
skipped with a :class:`ReviewLogWarning` naming its rowid.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from spill_guard.review.base import Redactor, ReviewSink
from spill_guard.review.errors import (
    NotAReviewLogError,
    RecordNotFoundError,
    ReviewLogError,
    ReviewLogWriteError,
)
from spill_guard.review.io_errors import on_read_only_filesystem, read_error, write_error
from spill_guard.review.jsontext import loads_strict
from spill_guard.review.record import LabelEvent, ReviewRecord
from spill_guard.review.skipped import SkipReport, first_problem, short_repr

SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database file

SCHEMA = """
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
COLUMNS = ("id", "created_at", "action", "flagged", "score", "label", "label_note", "labelled_at", "data")
_SELECT = "SELECT rowid, id, data, label, label_note, labelled_at FROM records"


def sql_text(value: str | None) -> str | bytes | None:
    """A text value as SQLite can bind it: a string with a lone surrogate (bytes that were
    not UTF-8, e.g. from the command line) cannot be a TEXT value, so it is stored as a BLOB
    of its ``surrogatepass`` UTF-8 bytes; :func:`from_sql_text` gives back the same string."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def from_sql_text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return value  # not ours: the label check below reports it
    return value


class SqliteSink(ReviewSink):
    """Review log in a ``.sqlite`` / ``.db`` file (created with its schema on first use).

    ``fsync=True`` (default) runs ``synchronous=FULL``: a committed record survives a power
    cut. ``fsync=False`` uses ``NORMAL``, which in WAL mode can lose the last commits on
    power loss but never corrupts the database.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fsync: bool = True,
        timeout: float = 30.0,
        redact: Redactor | None = None,
    ) -> None:
        super().__init__(redact=redact)
        self.path = Path(path)
        self.fsync = fsync
        self.timeout = float(timeout)
        self._local = threading.local()
        self._all_lock = threading.Lock()
        self._all: list[tuple[int, sqlite3.Connection]] = []

    # -- connections --------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == pid:
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = _file_size(self.path)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        with self._closed_if_refused(conn):
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            self._initialise(conn, size)
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.fsync else 'NORMAL'}")
        self._local.conn, self._local.pid = conn, pid
        with self._all_lock:
            self._all.append((pid, conn))
        return conn

    @contextlib.contextmanager
    def _closed_if_refused(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Close ``conn`` if setting it up fails; a file that is not a database becomes a NotAReviewLogError.

        Foreignness is left to SQLite, which reads the header through its own descriptor before
        it writes anything: this process must not open and close the database file itself while
        any of its connections is open, because closing *any* descriptor of a file drops all of
        the process's POSIX locks on it, including the shared lock WAL mode relies on (another
        process closing its connection would then checkpoint and delete the -wal file under
        this one's writers, and their next commits would be lost).
        """
        try:
            yield
        except BaseException as exc:
            conn.close()
            if isinstance(exc, _NotADatabase):
                raise self._not_a_database_error() from None
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:  # "file is not a database"
                raise self._not_a_database_error() from exc
            raise

    def _not_a_database_error(self) -> NotAReviewLogError:
        """The error for a file that is not a SQLite database. Its first bytes are read only for
        the hint, once SQLite refused it: no connection can be using it as a database then."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError:
            head = b""
        looks_jsonl = head.lstrip()[:1] in (b"{", b"[")
        return NotAReviewLogError(
            f"{self.path} is not a SQLite database"
            + (
                " (it looks like a JSONL review log: rename it to *.jsonl)"
                if looks_jsonl
                else "; point the log at the .sqlite file the guard wrote, or at a new path"
            )
            + "."
        )

    def _initialise(self, conn: sqlite3.Connection, size: int) -> None:
        # Switching to WAL needs an exclusive moment; when several processes open a fresh
        # database together SQLite may report "locked" without calling the busy handler,
        # so retry for up to `timeout` seconds.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._refuse_other_schema(conn, size)
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                conn.executescript(SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if str(mode).lower() != "wal":
            raise ReviewLogError(
                f"{self.path} could not be put in WAL mode (got {mode!r}); SQLite needs a local "
                "filesystem with shared memory for WAL: use a local path or a .jsonl log."
            )

    def _refuse_other_schema(self, conn: sqlite3.Connection, size: int) -> None:
        """Refuse a file that is not a review log; ``size`` is the file's size before ``conn`` was opened.

        Reading ``sqlite_master`` is the first thing read through ``conn``: SQLite refuses a file
        whose header is not SQLite's with SQLITE_NOTADB before it writes anything.
        """
        # Another application's database must not get our table (and WAL mode) added to it.
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            if size and conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                raise _NotADatabase  # SQLite takes a 1-byte file for an empty database and would overwrite it
            return
        if "records" not in tables:
            raise NotAReviewLogError(
                f"{self.path} is a SQLite database of something else (tables: {', '.join(sorted(tables)[:5])}), "
                "not a review log; point the log at the file the guard wrote, or at a new path."
            )
        columns = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise NotAReviewLogError(
                f"{self.path} has a 'records' table without the review-log columns {missing}; it is not a "
                "review log: point the log at the file the guard wrote, or at a new path."
            )

    @contextlib.contextmanager
    def _failures(self, what: str | None) -> Iterator[None]:
        """Translate failures: ``what`` names the thing being written, ``None`` means reading."""
        try:
            yield
        except ReviewLogWriteError:
            raise
        except ReviewLogError as exc:
            if what is None:
                raise
            raise ReviewLogWriteError(
                f"could not write the {what} to the review log {str(self.path)!r}: {exc}"
            ) from exc
        except (sqlite3.Error, OSError) as exc:
            if what is None:
                raise read_error(self.path, exc) from exc
            raise write_error(self.path, exc, what=what) from exc
        except (ValueError, TypeError, RecursionError) as exc:
            if what is None:
                raise
            raise write_error(self.path, exc, what=what) from exc

    # -- writing ------------------------------------------------------------------------
    def _row(self, record: ReviewRecord) -> tuple:
        with self._failures("record"):
            return (
                sql_text(record.id),
                sql_text(record.created_at),
                record.action,
                int(record.flagged),
                record.score,
                record.label,
                sql_text(record.label_note),
                sql_text(record.labelled_at),
                record.to_json(),
            )

    def _insert_rows(self, rows: list[tuple]) -> None:
        """Insert (or replace) ``rows`` in one transaction: one commit, one WAL sync, all or none."""
        with self._failures("record"):
            conn = self._connection()
            with _transaction(conn):
                conn.executemany(
                    "INSERT OR REPLACE INTO records "
                    "(id, created_at, action, flagged, score, label, label_note, labelled_at, data) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )

    def _append(self, record: ReviewRecord) -> None:
        self._insert_rows([self._row(record)])

    def _append_many(self, records: list[ReviewRecord]) -> list[Exception | None]:
        return self._commit_encoded(records, self._row, self._insert_rows)

    def _append_label(self, record_id: str, label: str, note: str | None, labelled_at: str) -> None:
        with self._failures("label"):
            conn = self._connection()
            with _transaction(conn):
                changed = conn.execute(
                    "UPDATE records SET label = ?, label_note = ?, labelled_at = ? WHERE id = ?",
                    (label, sql_text(note), labelled_at, sql_text(record_id)),
                ).rowcount
        if changed == 0:
            raise RecordNotFoundError(
                f"record {record_id!r} is no longer in {self.path} (removed while labelling); nothing was labelled."
            )

    # -- reading ------------------------------------------------------------------------
    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        if not self.path.exists():
            return []
        with self._failures(None):
            try:
                conn = self._connection()
            except sqlite3.OperationalError as exc:
                conn = self._read_only_connection(exc)
            return conn.execute(sql, params).fetchall()

    def _read_only_connection(self, failure: sqlite3.OperationalError) -> sqlite3.Connection:
        """Read a log on a read-only filesystem (a mounted backup, an image layer).

        WAL readers need to create the -shm file, which a read-only filesystem refuses; SQLite's
        ``immutable`` mode reads without it. That is only safe because nothing can write there,
        and only when no non-empty -wal holds commits that immutable mode would not see;
        otherwise the original failure stands.
        """
        wal = self.path.with_name(self.path.name + "-wal")
        if not on_read_only_filesystem(self.path) or (wal.exists() and wal.stat().st_size > 0):
            raise failure
        size = _file_size(self.path)
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        with self._closed_if_refused(conn):
            self._refuse_other_schema(conn, size)
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._all_lock:
            self._all.append((os.getpid(), conn))
        return conn

    def records(self) -> list[ReviewRecord]:
        report = SkipReport(self.path)
        rows = self._rows(f"{_SELECT} ORDER BY rowid")
        records = [r for row in rows if (r := self._row_record(row, report)) is not None]
        report.finish()
        return records

    def _row_record(self, row: tuple, report: SkipReport) -> ReviewRecord | None:
        """The record in one row, its label columns applied; ``None`` (reported) if the row is not a record."""
        rowid, row_id, data, label, note, labelled_at = row
        where = f"{self.path} rowid {rowid}"
        if not isinstance(data, (str, bytes)):
            report.skip(where, f"skipped a row whose data is {type(data).__name__}, not JSON text")
            return None
        try:
            record = ReviewRecord.from_parsed(loads_strict(data))
        except (ValueError, RecursionError) as exc:  # ValidationError is a ValueError
            why = first_problem(exc) if isinstance(exc, ValidationError) else "not valid JSON"
            report.skip(where, f"skipped a row whose data is not a valid record: {why}")
            return None
        if from_sql_text(row_id) != record.id:
            report.skip(
                where,
                f"skipped a row whose id column {short_repr(row_id)} is not its record's id {short_repr(record.id)}",
            )
            return None
        if label is None:
            return record
        try:  # the label columns are the truth; the JSON keeps what was written
            event = LabelEvent(
                id=record.id, label=label, note=from_sql_text(note), labelled_at=from_sql_text(labelled_at)
            )
        except ValidationError as exc:
            report.skip(where, f"ignored malformed label columns: {first_problem(exc)}")
            return record
        return record.with_label(event.label, event.note, event.labelled_at)

    def _matching(self, prefix: str) -> list[ReviewRecord]:
        key = sql_text(prefix)
        rows = self._rows(f"{_SELECT} WHERE substr(id, 1, ?) = ? ORDER BY id = ? DESC, rowid", (len(key), key, key))  # type: ignore[arg-type]
        report = SkipReport(self.path)
        found = [r for row in rows if (r := self._row_record(row, report)) is not None][:2]
        report.finish()
        return found

    def count(self) -> int:
        """Number of rows (cheap: no JSON is parsed)."""
        rows = self._rows("SELECT count(*) FROM records")
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        """Close this process's connections; a later call reconnects (like the JSONL sink)."""
        pid = os.getpid()
        with self._all_lock:
            mine = [c for p, c in self._all if p == pid]
            self._all = []
        for conn in mine:  # a connection inherited through fork belongs to the parent: never close it here
            conn.close()
        self._local = threading.local()


class _NotADatabase(Exception):
    """A non-empty file that SQLite would take for an empty database (see ``_refuse_other_schema``)."""


def _file_size(path: Path) -> int:
    """The file's size (``os.stat``: no descriptor that could drop SQLite's locks), 0 if it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: takes the write lock up front, so two writers queue
    on the busy timeout instead of one failing when it upgrades a read lock.

    A failed statement or ``COMMIT`` (full disk) is rolled back, so the connection is usable
    for the next write; a rollback that fails in turn never hides the original error.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self.conn.in_transaction:  # SQLite may already have rolled back (e.g. SQLITE_FULL)
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
