"""Review log in a SQLite database (stdlib ``sqlite3``), safe with threads and processes.

Each record is one row of ``records``: the record as JSON text plus indexed columns for the
fields people filter on (``created_at``, ``action``, ``flagged``, ``score``, ``label``) and the
latest label (``label``, ``label_note``, ``labelled_at``, ``labelled_by``, ``corrected_answer``).
A label is one transaction that updates the label columns and appends the event to ``labels``
(the label history, ``seq`` in label order); the JSON keeps what was written. A log written
before the label history existed is upgraded when it is opened for writing (the two columns
added, its latest labels copied into ``labels``: the only history it kept); where it cannot be
(a read-only file) it is still read, without reviewers and corrected answers.

Write order is the ``rowid``: a record gets one more than the highest rowid in the table, a
rewrite of an id included (``INSERT OR REPLACE`` alone would give a rewrite of the newest record
its old rowid back, and a reader that remembers the highest rowid it read would miss it), so
:meth:`SqliteSink.changes` reads only the rows past its cursor.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from spill_guard.review.base import Redactor, ReviewSink
from spill_guard.review.changes import LogChanges, RecordSummary, stored_summary
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

T = TypeVar("T")

SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database file

RECORDS_TABLE = """CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    action TEXT NOT NULL,
    flagged INTEGER NOT NULL,
    score REAL,
    label TEXT,
    label_note TEXT,
    labelled_at TEXT,
    labelled_by TEXT,
    corrected_answer TEXT,
    data TEXT NOT NULL
)"""
LABELS_TABLE = """CREATE TABLE IF NOT EXISTS labels (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL,
    label TEXT NOT NULL,
    note TEXT,
    labelled_at TEXT NOT NULL,
    reviewer TEXT,
    corrected_answer TEXT
)"""
SCHEMA = (
    RECORDS_TABLE,
    "CREATE INDEX IF NOT EXISTS records_created_at ON records(created_at)",
    "CREATE INDEX IF NOT EXISTS records_action ON records(action)",
    "CREATE INDEX IF NOT EXISTS records_flagged ON records(flagged)",
    "CREATE INDEX IF NOT EXISTS records_label ON records(label)",
    LABELS_TABLE,
    "CREATE INDEX IF NOT EXISTS labels_record_id ON labels(record_id)",
)
# The columns every review log has (a 'records' table without them is someone else's) ...
COLUMNS = ("id", "created_at", "action", "flagged", "score", "label", "label_note", "labelled_at", "data")
# ... and those added with the label history (absent in logs written before it).
ADDED_COLUMNS = ("labelled_by", "corrected_answer")
LABEL_COLUMNS = "label, label_note, labelled_at, {added}"  # {added}: ADDED_COLUMNS, or NULLs in an old log
_SELECT = f"SELECT rowid, id, data, {LABEL_COLUMNS} FROM records"
# Write order: one more than the highest rowid, evaluated before REPLACE deletes the row it replaces.
_INSERT = (
    "INSERT OR REPLACE INTO records (rowid, id, created_at, action, flagged, score, label, label_note, labelled_at, "
    "labelled_by, corrected_answer, data) VALUES ((SELECT coalesce(max(rowid), 0) + 1 FROM records), "
    "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The summary fields that are not columns, from the JSON in SQL: one array, strings with their
# JSON escapes as written (NUL and lone surrogates survive), parsed in Python without the record.
_JSON_FIELDS = ("id", "threshold", "rule_version", "model", "question", "answer", "original_answer")
_SUMMARIES = (
    f"SELECT rowid, id, created_at, action, flagged, score, {LABEL_COLUMNS}, "
    "CASE WHEN json_valid(data) THEN json_extract(data, "
    + ", ".join(f"'$.{name}'" for name in _JSON_FIELDS)
    + ") END FROM records WHERE rowid > ? ORDER BY rowid"
)
_LABEL_EVENTS = (
    "SELECT seq, record_id, label, note, labelled_at, reviewer, corrected_answer FROM labels "
    "WHERE seq > ? AND record_id IN (SELECT id FROM records) ORDER BY seq"
)


@dataclass(frozen=True)
class _SqliteCursor:
    """Where :meth:`SqliteSink.changes` stopped: the highest ``rowid`` of ``records`` it had seen
    and the id of that row (a different id there later means rows were deleted and the rowid
    reused: the log is read again), and the highest ``seq`` of ``labels``."""

    rowid: int = 0
    last_id: str | None = None
    label_seq: int = 0


_NOTHING_READ = _SqliteCursor()


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
        self._local.conn, self._local.pid, self._local.current = conn, pid, None
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
                self._create_or_upgrade(conn, read_only_ok=True)
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

    def _create_or_upgrade(self, conn: sqlite3.Connection, *, read_only_ok: bool) -> None:
        """Create the tables, or add what an older log lacks (the two label columns, the ``labels``
        table, filled with the latest label of each record: the only history an old log kept).

        One ``BEGIN IMMEDIATE`` transaction that looks again at what is there: processes opening
        an old log together upgrade it once, the others wait for it. ``read_only_ok``: an old log
        that cannot be written (a read-only file) is left as it is, to be read without the added
        columns; a write upgrades it first (``read_only_ok=False``) and fails with the cause.
        """
        if self._has_current_layout(conn):
            return
        existed = "records" in _tables(conn)  # BEGIN IMMEDIATE itself fails on a read-only file
        try:
            with _transaction(conn):
                tables = _tables(conn)
                existed = "records" in tables
                for statement in SCHEMA:
                    conn.execute(statement)
                columns = _columns(conn)
                for name in ADDED_COLUMNS:
                    if name not in columns:
                        conn.execute(f"ALTER TABLE records ADD COLUMN {name} TEXT")
                if existed and "labels" not in tables:
                    conn.execute(
                        "INSERT INTO labels (record_id, label, note, labelled_at) SELECT id, label, label_note, "
                        "labelled_at FROM records WHERE label IS NOT NULL AND labelled_at IS NOT NULL "
                        "ORDER BY labelled_at, rowid"
                    )
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
            if not (read_only_ok and existed and code == sqlite3.SQLITE_READONLY):
                raise
        self._local.current = None  # looked at again by the next read

    @staticmethod
    def _has_current_layout(conn: sqlite3.Connection) -> bool:
        return "labels" in _tables(conn) and all(name in _columns(conn) for name in ADDED_COLUMNS)

    def _current(self, conn: sqlite3.Connection) -> bool:
        """Whether the log has the label history (an old log opened read-only may not have it yet).
        Remembered per thread once true: a layout is never taken back."""
        if not getattr(self._local, "current", None):
            self._local.current = self._has_current_layout(conn)
        return bool(self._local.current)

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
                sql_text(record.labelled_by),
                sql_text(record.corrected_answer),
                record.to_json(),
            )

    def _writable(self) -> sqlite3.Connection:
        """This thread's connection to a log with the current layout (an old log is upgraded now)."""
        conn = self._connection()
        if not self._current(conn):
            self._create_or_upgrade(conn, read_only_ok=False)
        return conn

    def _insert_rows(self, rows: list[tuple]) -> None:
        """Insert (or replace) ``rows`` in one transaction: one commit, one WAL sync, all or none."""
        with self._failures("record"):
            conn = self._writable()
            with _transaction(conn):
                conn.executemany(_INSERT, rows)

    def _append(self, record: ReviewRecord) -> None:
        self._insert_rows([self._row(record)])

    def _append_many(self, records: list[ReviewRecord]) -> list[Exception | None]:
        return self._commit_encoded(records, self._row, self._insert_rows)

    def _append_label(self, event: LabelEvent) -> None:
        values = (
            event.label,
            sql_text(event.note),
            sql_text(event.labelled_at),
            sql_text(event.reviewer),
            sql_text(event.corrected_answer),
            sql_text(event.id),
        )
        with self._failures("label"):
            conn = self._writable()
            with _transaction(conn):  # the latest label and the history change together
                changed = conn.execute(
                    "UPDATE records SET label = ?, label_note = ?, labelled_at = ?, labelled_by = ?, "
                    "corrected_answer = ? WHERE id = ?",
                    values,
                ).rowcount
                if changed:
                    conn.execute(
                        "INSERT INTO labels (label, note, labelled_at, reviewer, corrected_answer, record_id) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        values,
                    )
        if changed == 0:
            raise RecordNotFoundError(
                f"record {event.id!r} is no longer in {self.path} (removed while labelling); nothing was labelled."
            )

    # -- reading ------------------------------------------------------------------------
    def _reading(self, operation: Callable[[sqlite3.Connection], T], empty: T) -> T:
        """``operation(connection)``, or ``empty`` when there is no log; failures are read errors."""
        if not self.path.exists():
            return empty
        with self._failures(None):
            try:
                conn = self._connection()
            except sqlite3.OperationalError as exc:
                conn = self._read_only_connection(exc)
            return operation(conn)

    def _rows(self, template: str, params: tuple = ()) -> list[tuple]:
        """The rows of a query whose ``{added}`` stands for the added label columns."""

        def query(conn: sqlite3.Connection) -> list[tuple]:
            added = ", ".join(ADDED_COLUMNS) if self._current(conn) else ", ".join("NULL" for _ in ADDED_COLUMNS)
            return conn.execute(template.format(added=added), params).fetchall()

        return self._reading(query, [])

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
        self._local.conn, self._local.pid, self._local.current = conn, os.getpid(), None
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
        rowid, row_id, data = row[:3]
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
        # the label columns are the truth; the JSON keeps what was written
        event = self._stored_label(record.id, _label_columns(row[3:8]), where, report)
        return record if event is None else record.with_event(event)

    def changes(self, cursor: object | None = None) -> LogChanges:
        """What was written since ``cursor``: the rows of ``records`` past its rowid and of
        ``labels`` past its seq, read in one snapshot; summaries come from the columns and from
        the JSON in SQL (a row whose fields do not make a summary is read whole, as
        :meth:`records` reads it, and skipped with its warning if it is not a record).

        A cursor is no longer valid (``reset=True``) when the log holds fewer rows than it had
        seen, or another record sits at its rowid (rows deleted by hand and the rowid reused).
        """
        since = cursor if isinstance(cursor, _SqliteCursor) else None
        nothing = LogChanges([], [], _NOTHING_READ, reset=since != _NOTHING_READ)
        return self._reading(lambda conn: self._changes(conn, since), nothing)

    def _changes(self, conn: sqlite3.Connection, since: _SqliteCursor | None) -> LogChanges:
        report = SkipReport(self.path)
        current = self._current(conn)
        added = ", ".join(ADDED_COLUMNS) if current else ", ".join("NULL" for _ in ADDED_COLUMNS)
        with _snapshot(conn):
            top = conn.execute("SELECT max(rowid) FROM records").fetchone()[0] or 0
            top_seq = (conn.execute("SELECT max(seq) FROM labels").fetchone()[0] or 0) if current else 0
            valid = (
                since is not None
                and since.rowid <= top
                and since.label_seq <= top_seq
                and self._id_at(conn, since.rowid) in (None, since.last_id)
            )
            start = since if since is not None and valid else _NOTHING_READ
            summaries: dict[int, RecordSummary] = {}
            for row in conn.execute(_SUMMARIES.format(added=added), (start.rowid,)).fetchall():
                summary = self._summary(row, report)
                if summary is None:  # not a summary from its fields: read the whole row, as records() does
                    [whole] = conn.execute(f"{_SELECT.format(added=added)} WHERE rowid = ?", (row[0],)).fetchall()
                    record = self._row_record(whole, report)
                    summary = None if record is None else RecordSummary.of(record)
                if summary is not None:
                    summaries[row[0]] = summary
            labels = [
                event
                for row in (conn.execute(_LABEL_EVENTS, (start.label_seq,)).fetchall() if current else [])
                if (event := self._label_event(row, report)) is not None
            ]
            after = _SqliteCursor(top, self._id_at(conn, top), top_seq)
        report.finish()
        return LogChanges(list(summaries.values()), labels, after, reset=not valid)

    @staticmethod
    def _id_at(conn: sqlite3.Connection, rowid: int) -> str | None:
        row = conn.execute("SELECT id FROM records WHERE rowid = ?", (rowid,)).fetchone() if rowid else None
        return None if row is None else from_sql_text(row[0])

    def _summary(self, row: tuple, report: SkipReport) -> RecordSummary | None:
        """The summary of a row from its columns and JSON fields; ``None`` when they do not make one
        (then the whole row decides). Malformed label columns are reported, as :meth:`records` does."""
        rowid, row_id, created_at, action, flagged, score = row[:6]
        extracted = row[-1]
        if not isinstance(extracted, str):
            return None
        fields = dict(zip(_JSON_FIELDS, loads_strict(extracted)))
        row_id = from_sql_text(row_id)
        if fields.pop("id") != row_id or fields["model"] is None:  # no model: the record's default decides
            return None
        fields.update(id=row_id, created_at=from_sql_text(created_at), action=action, flagged=flagged, score=score)
        try:
            stored = stored_summary(fields, None)
        except ValidationError:
            return None
        event = self._stored_label(row_id, _label_columns(row[6:11]), f"{self.path} rowid {rowid}", report)
        return stored if event is None else stored.with_event(event)

    def _label_event(self, row: tuple, report: SkipReport) -> LabelEvent | None:
        seq, record_id, *columns = row
        where = f"{self.path} labels seq {seq}"
        return self._event_of(
            from_sql_text(record_id), _label_columns(tuple(columns)), where, report, "skipped a malformed label event"
        )

    def _matching(self, prefix: str) -> list[ReviewRecord]:
        key = sql_text(prefix)
        if isinstance(key, str):
            # Both lookups are ranges of the primary key's index (substr() would read every row): the
            # exact id, else the first two ids in [prefix, prefix + the highest code point).
            rows = self._rows(f"{_SELECT} WHERE id = ?", (key,)) or self._rows(
                f"{_SELECT} WHERE id >= ? AND id < ? ORDER BY id LIMIT 2", (key, key + "\U0010ffff")
            )
        else:  # a lone surrogate: such ids are BLOBs, outside the text index's ranges
            rows = self._rows(f"{_SELECT} WHERE substr(id, 1, ?) = ? ORDER BY id = ? DESC, rowid", (len(key), key, key))  # type: ignore[arg-type]
        report = SkipReport(self.path)
        found = [r for row in rows if (r := self._row_record(row, report)) is not None][:2]
        report.finish()
        return found

    def _with_ids(self, ids: list[str]) -> dict[str, ReviewRecord]:
        report = SkipReport(self.path)
        found: dict[str, ReviewRecord] = {}
        for start in range(0, len(ids), 500):  # SQLite binds at most 999 parameters in older builds
            chunk = [sql_text(i) for i in ids[start : start + 500]]
            rows = self._rows(f"{_SELECT} WHERE id IN ({', '.join('?' * len(chunk))})", tuple(chunk))
            found.update((r.id, r) for row in rows if (r := self._row_record(row, report)) is not None)
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


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA table_info(records)")}


def _label_columns(values: tuple) -> tuple:
    """A row's label columns (label, note, labelled_at, labelled_by, corrected_answer), text decoded.

    The label itself is taken as stored: a label that is not text is malformed, not decoded."""
    label, *texts = values
    return (label, *(from_sql_text(t) for t in texts))


@contextlib.contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """A read transaction: every query in the block sees the database as of its first one."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


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
