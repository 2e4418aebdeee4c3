"""Review log in a SQLite database (stdlib ``sqlite3``), safe with threads and processes.

Each record is one row: the record as JSON text plus indexed columns for the fields people
filter on (``created_at``, ``action``, ``flagged``, ``score``, ``label``). A label is an
``UPDATE`` of the label columns in its own transaction; the JSON keeps what was written.

Concurrency: the database runs in WAL mode (readers never block the writer), every
connection waits up to ``timeout`` seconds for a lock instead of failing with
"database is locked", and each thread (and each process, after ``fork``) gets its own
connection, because a ``sqlite3.Connection`` must not be shared across threads or forks.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from spill_guard.review.base import Redactor, ReviewSink
from spill_guard.review.errors import ReviewLogError
from spill_guard.review.record import ReviewRecord

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

    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == pid:
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        self._initialise(conn)
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.fsync else 'NORMAL'}")
        self._local.conn, self._local.pid = conn, pid
        with self._all_lock:
            self._all.append((pid, conn))
        return conn

    def _initialise(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs an exclusive moment; when several processes open a fresh
        # database together SQLite may report "locked" without calling the busy handler,
        # so retry for up to `timeout` seconds.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                conn.executescript(SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise ReviewLogError(f"cannot open the review log {self.path}: {exc}") from exc
                time.sleep(0.05)
        if str(mode).lower() != "wal":
            raise ReviewLogError(
                f"{self.path} could not be put in WAL mode (got {mode!r}); SQLite needs a local "
                "filesystem with shared memory for WAL: use a local path or a .jsonl log."
            )

    def _append(self, record: ReviewRecord) -> None:
        conn = self._connection()
        with _transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO records "
                "(id, created_at, action, flagged, score, label, label_note, labelled_at, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.created_at, record.action, int(record.flagged), record.score,
                 record.label, record.label_note, record.labelled_at, record.to_json()),
            )

    def _append_label(self, record_id: str, label: str, note: str | None, labelled_at: str) -> None:
        conn = self._connection()
        with _transaction(conn):
            conn.execute(
                "UPDATE records SET label = ?, label_note = ?, labelled_at = ? WHERE id = ?",
                (label, note, labelled_at, record_id),
            )

    def records(self) -> list[ReviewRecord]:
        if not self.path.exists():
            return []
        rows = self._connection().execute(
            "SELECT data, label, label_note, labelled_at FROM records ORDER BY rowid"
        ).fetchall()
        return [self._row_record(*row) for row in rows]

    @staticmethod
    def _row_record(data: str, label: str | None, note: str | None, labelled_at: str | None) -> ReviewRecord:
        record = ReviewRecord.from_json(data)
        if label is not None:  # the label columns are the truth; the JSON keeps what was written
            record = record.model_copy(update={"label": label, "label_note": note, "labelled_at": labelled_at})
        return record

    def _matching(self, prefix: str) -> list[ReviewRecord]:
        if not self.path.exists():
            return []
        rows = self._connection().execute(
            "SELECT data, label, label_note, labelled_at FROM records WHERE substr(id, 1, ?) = ? "
            "ORDER BY id = ? DESC, rowid LIMIT 2", (len(prefix), prefix, prefix),
        ).fetchall()
        return [self._row_record(*row) for row in rows]

    def count(self) -> int:
        """Number of records (cheap: no JSON is parsed)."""
        if not self.path.exists():
            return 0
        return int(self._connection().execute("SELECT count(*) FROM records").fetchone()[0])

    def close(self) -> None:
        """Close this process's connections; a later call reconnects (like the JSONL sink)."""
        pid = os.getpid()
        with self._all_lock:
            mine = [c for p, c in self._all if p == pid]
            self._all = []
        for conn in mine:  # a connection inherited through fork belongs to the parent: never close it here
            conn.close()
        self._local = threading.local()


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: takes the write lock up front, so two writers queue
    on the busy timeout instead of one failing when it upgrades a read lock."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
