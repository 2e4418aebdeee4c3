"""Review log in PostgreSQL (``postgresql://user@host:5432/db``), shared by guards on many machines.

Layout (``schema_version`` 1; ``T`` is the table, default ``spill_guard_review``; pick
another with ``table=`` or a URL fragment, ``postgresql://host/db#my_table``):

* ``T``: one row per record. ``id`` is the primary key in the ``C`` collation, so an id
  prefix (``LIKE 'ab12%'``) is a range scan of that index; ``seq`` is the write order;
  ``created_at``, ``action``, ``flagged``, ``score`` and ``label`` are indexed columns;
  ``data`` is the record as JSON text, exactly the line the JSONL sink writes. It is
  ``text``, not ``jsonb``: jsonb rejects ``\\u0000`` (which a question can contain) and
  reorders keys. Query it with ``data::jsonb``.
* ``T_labels``: every label ever set, appended (``seq``, ``record_id``, ``label``, ``note``,
  ``labelled_at``). The label columns of ``T`` hold the latest one.
* ``spill_guard_schema``: ``(log_table, version)``. A newer layout is refused, not misread.

Concurrency: each thread (and each process, after ``fork``) uses its own autocommit
connection. A record is one ``INSERT … ON CONFLICT (id) DO UPDATE``, so a rewrite replaces
the record and moves it to the end like the other sinks; a ``write_many`` batch is one
transaction of such inserts (one commit, one WAL flush). A label is one transaction that
updates the row (taking its lock) and then appends the event, so concurrent labellers
agree on which label is the latest. Tables are created under an advisory lock, because
``CREATE TABLE IF NOT EXISTS`` races when two processes create at once. A connection the
server dropped (restart, failover, idle kill) is replaced once and the operation re-run.
Writing the same id again is idempotent, so re-running an insert is safe.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from spill_guard.review.base import Redactor, ReviewSink
from spill_guard.review.errors import (
    NotAReviewLogError,
    RecordNotFoundError,
    ReviewLogError,
    ReviewLogWriteError,
)
from spill_guard.review.io_errors import write_error
from spill_guard.review.jsontext import loads_strict
from spill_guard.review.postgres_errors import (
    CONNECT_FIX,
    LOST_FIX,
    PostgresNotInstalledError,
    chainable,
    failure,
    fix_for,
)
from spill_guard.review.postgres_schema import (
    COLUMNS,
    INDEXED,
    INSERT_RECORD,
    SCHEMA,
    SCHEMA_LOCK_KEY,
    SCHEMA_TABLE,
    SCHEMA_VERSION,
    pg_text,
)
from spill_guard.review.postgres_url import (
    DEFAULT_TABLE,
    TABLE_NAME,
    is_postgres_url,
    mask_password,
    passwords_in,
    split_table,
)
from spill_guard.review.record import LabelEvent, ReviewRecord
from spill_guard.review.skipped import SkipReport, first_problem, short_repr

T = TypeVar("T")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise PostgresNotInstalledError(
            "a postgresql:// review log needs psycopg: pip install 'spill-guard[postgres]'"
        ) from exc
    return psycopg


class _ConnectionLost(Exception):
    """The server closed this thread's connection; retried once on a fresh one."""


class _ConnectionFailed(Exception):
    """psycopg could not connect; carries the cause to :meth:`PostgresSink._run`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Held:
    """One thread's connection. When the thread ends, Python frees its thread-local slot and
    the finalizer closes the connection, so a pool whose threads come and go (asyncio's
    ``to_thread``, AnyIO workers) does not leave a server session behind per dead thread."""

    __slots__ = ("conn", "pid", "__weakref__")

    def __init__(self, conn: Any, pid: int) -> None:
        self.conn, self.pid = conn, pid
        weakref.finalize(self, _close_in_owner, conn, pid)


def _close_in_owner(conn: Any, pid: int) -> None:
    if os.getpid() == pid:  # never in a fork child: that would end the parent's session
        conn.close()


# Sinks alive in this process, so a forked child can drop the parent's connections and lock.
_LIVE_SINKS: weakref.WeakSet[PostgresSink] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for sink in list(_LIVE_SINKS):
        sink._forget_parent_state()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class PostgresSink(ReviewSink):
    """Review log in a PostgreSQL table (created with its schema on the first write).

    ``url`` is a libpq URL (``postgresql://user:password@host:5432/db?sslmode=require``),
    optionally ending in ``#table``. The password never appears in ``repr``, ``location`` or
    error messages. ``fsync=False`` sets ``synchronous_commit = off`` for this sink's
    connections: a server crash can lose the last commits, never corrupt the table. Reading
    a log whose table does not exist yet gives no records and creates nothing.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str | None = None,
        fsync: bool = True,
        connect_timeout: float = 10.0,
        redact: Redactor | None = None,
    ) -> None:
        super().__init__(redact=redact)
        if not is_postgres_url(url):
            raise ReviewLogError(
                f"{mask_password(str(url))!r} is not a PostgreSQL URL; write it as "
                "postgresql://user:password@host:5432/database."
            )
        self._conninfo, fragment = split_table(url)
        self.table = table or fragment or DEFAULT_TABLE
        if not TABLE_NAME.fullmatch(self.table):
            raise ReviewLogError(
                f"review-log table name {self.table!r} is not valid; use lowercase letters, "
                "digits and _ (at most 40), optionally schema-qualified: 'guard_logs.prod'."
            )
        self._schema, _, self._base = self.table.rpartition(".")
        self.fsync = fsync
        self.connect_timeout = max(2, int(round(connect_timeout)))  # libpq: whole seconds, 2 at least
        self._secrets = passwords_in(self._conninfo)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: weakref.WeakSet[_Held] = weakref.WeakSet()  # every thread's connection, for close()
        self._checked_in_pid: int | None = None  # the process that has verified the tables
        _LIVE_SINKS.add(self)

    @property
    def location(self) -> str:
        return f"{mask_password(self._conninfo)}#{self.table}"

    def __reduce__(self) -> tuple:
        # Connections cannot cross processes: a copy (e.g. shipped to a Ray replica on another
        # machine) keeps the URL and options only, and connects on first use.
        rebuild = functools.partial(
            PostgresSink, table=self.table, fsync=self.fsync, connect_timeout=self.connect_timeout, redact=self.redact
        )
        return (rebuild, (self._conninfo,))

    # -- SQL names -----------------------------------------------------------------------
    def _sql(self, template: str) -> Any:
        sql = _psycopg().sql

        def ident(name: str) -> Any:
            return sql.Identifier(self._schema, name) if self._schema else sql.Identifier(name)

        indexes = {f"ix_{col}": sql.Identifier(f"{self._base}_{col}") for col in INDEXED}
        return sql.SQL(template).format(
            t=ident(self._base),
            labels=ident(f"{self._base}_labels"),
            meta=ident(SCHEMA_TABLE),
            ix_labels=sql.Identifier(f"{self._base}_labels_record"),
            **indexes,
        )

    def _regclass(self, name: str) -> str:
        return f"{self._schema}.{name}" if self._schema else name

    # -- connections ---------------------------------------------------------------------
    def _connection(self) -> Any:
        pid = os.getpid()
        held = getattr(self._local, "held", None)
        if held is not None and held.pid == pid and not held.conn.closed:
            return held.conn
        psycopg = _psycopg()
        try:
            conn = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=self.connect_timeout, application_name="spill_guard"
            )
        except psycopg.Error as exc:
            raise _ConnectionFailed(exc) from exc
        self._local.held = held = _Held(conn, pid)  # from here on, its finalizer closes conn
        with self._lock:
            self._held.add(held)
        if not self.fsync:
            conn.execute("SET synchronous_commit = off")
        return conn

    def _forget_parent_state(self) -> None:
        # In a fresh fork child: the parent's connections share its sockets, so they must be
        # neither used nor closed here (closing would end the parent's sessions); _Held's
        # finalizer and psycopg both leave a connection of another process alone, so
        # dropping the references is safe. The lock may have been held by a thread that is gone.
        self._lock = threading.Lock()
        self._local = threading.local()
        self._held = weakref.WeakSet()

    def _run(self, what: str | None, operation: Callable[[Any], T]) -> T:
        """``operation(connection)``; a dropped connection is replaced once. ``what`` names what
        is written (``None``: reading), for the error."""
        psycopg = _psycopg()

        def attempt_once() -> T:
            conn = self._connection()
            try:
                return operation(conn)
            except psycopg.OperationalError as exc:
                if conn.broken:
                    self._local.held = None  # its finalizer closes it; the retry connects afresh
                    raise _ConnectionLost() from exc
                raise

        try:
            for attempt in Retrying(
                stop=stop_after_attempt(2), retry=retry_if_exception_type(_ConnectionLost), reraise=True
            ):
                with attempt:
                    return attempt_once()
        except _ConnectionLost as lost:
            cause, fix = lost.__cause__, LOST_FIX
        except _ConnectionFailed as failed:
            cause, fix = failed.cause, CONNECT_FIX
        except psycopg.Error as exc:
            cause, fix = exc, fix_for(exc)
        except ReviewLogWriteError:
            raise
        except ReviewLogError as exc:  # e.g. a newer schema: on a write, still a failed write
            if what is None:
                raise
            raise ReviewLogWriteError(f"could not write the {what} to the review log {self.location!r}: {exc}") from exc
        raise failure(self.location, what, cause, fix, self._secrets) from chainable(cause, self._secrets)

    # -- schema --------------------------------------------------------------------------
    def _tables_ready(self, conn: Any, *, create: bool) -> bool:
        """Whether the log's tables exist (creating them if ``create``), at the schema version we read."""
        if self._checked_in_pid == os.getpid():
            return True
        records, labels, meta = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
            (self._regclass(self._base), self._regclass(f"{self._base}_labels"), self._regclass(SCHEMA_TABLE)),
        ).fetchone()
        version = self._stored_version(conn) if meta else None
        if version is None and records:
            self._refuse_foreign_table(conn)
        if version is None or not (records and labels):
            if not create:
                return False
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                for statement in SCHEMA:
                    conn.execute(self._sql(statement))
                conn.execute(
                    self._sql(
                        "INSERT INTO {meta} (log_table, version) VALUES (%s, %s) ON CONFLICT (log_table) DO NOTHING"
                    ),
                    (self.table, SCHEMA_VERSION),
                )
            version = self._stored_version(conn)
        if version != SCHEMA_VERSION:
            raise ReviewLogError(
                f"the review log {self.location} has schema version {version}; this spill_guard reads "
                f"version {SCHEMA_VERSION}: upgrade it (pip install -U 'spill-guard[postgres]')."
            )
        self._checked_in_pid = os.getpid()
        return True

    def _stored_version(self, conn: Any) -> int | None:
        row = conn.execute(self._sql("SELECT version FROM {meta} WHERE log_table = %s"), (self.table,)).fetchone()
        return None if row is None else int(row[0])

    def _refuse_foreign_table(self, conn: Any) -> None:
        # A table of that name that no spill_guard registered: someone else's, unless it has our columns.
        columns = {
            row[0]
            for row in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                (self._regclass(self._base),),
            )
        }
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise NotAReviewLogError(
                f"table {self.table!r} in {mask_password(self._conninfo)} is not a review log "
                f"(no columns {missing}); name another table with '#table' in the URL."
            )

    # -- primitives ----------------------------------------------------------------------
    def _row(self, record: ReviewRecord) -> tuple:
        try:
            data = record.to_json()
        except (ValueError, TypeError, RecursionError) as exc:
            raise write_error(self.location, exc) from exc
        return (
            pg_text(record.id),
            pg_text(record.created_at),
            record.action,
            record.flagged,
            record.score,
            record.label,
            pg_text(record.label_note),
            pg_text(record.labelled_at),
            data,
        )

    def _insert_rows(self, rows: list[tuple]) -> None:
        """Insert (or replace) ``rows``: one statement, or one transaction for several (all or none)."""

        def insert(conn: Any) -> None:
            self._tables_ready(conn, create=True)
            if len(rows) == 1:  # autocommit: the statement is its own transaction
                conn.execute(self._sql(INSERT_RECORD), rows[0])
                return
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(self._sql(INSERT_RECORD), rows)

        self._run("record", insert)

    def _append(self, record: ReviewRecord) -> None:
        self._insert_rows([self._row(record)])

    def _append_many(self, records: list[ReviewRecord]) -> list[Exception | None]:
        return self._commit_encoded(records, self._row, self._insert_rows)

    def _append_label(self, record_id: str, label: str, note: str | None, labelled_at: str) -> None:
        row_id, note = pg_text(record_id), pg_text(note)

        def label_it(conn: Any) -> int:
            self._tables_ready(conn, create=True)
            with conn.transaction():  # the UPDATE locks the row, so events are appended in label order
                updated = conn.execute(
                    self._sql("UPDATE {t} SET label = %s, label_note = %s, labelled_at = %s WHERE id = %s"),
                    (label, note, labelled_at, row_id),
                ).rowcount
                if updated:
                    conn.execute(
                        self._sql("INSERT INTO {labels} (record_id, label, note, labelled_at) VALUES (%s, %s, %s, %s)"),
                        (row_id, label, note, labelled_at),
                    )
            return updated

        if not self._run("label", label_it):
            raise RecordNotFoundError(
                f"record {record_id!r} is no longer in {self.location} (removed while labelling); nothing was labelled."
            )

    def _select(self, where: str = "", params: tuple = (), order: str = "seq") -> list[ReviewRecord]:
        query = self._sql(f"SELECT seq, id, data, label, label_note, labelled_at FROM {{t}} {where} ORDER BY {order}")

        def select(conn: Any) -> list[tuple]:
            return conn.execute(query, params).fetchall() if self._tables_ready(conn, create=False) else []

        rows = self._run(None, select)
        report = SkipReport(self.location)
        records = [r for row in rows if (r := self._row_record(row, report)) is not None]
        report.finish()
        return records

    def records(self) -> list[ReviewRecord]:
        return self._select()

    def _matching(self, prefix: str) -> list[ReviewRecord]:
        # LIKE 'prefix%' on a C-collation primary key is an index range scan.
        key = pg_text(prefix)
        pattern = re.sub(r"([\\%_])", r"\\\1", key) + "%"
        return self._select("WHERE id LIKE %s ESCAPE '\\'", (pattern, key), order="id = %s DESC, seq")[:2]

    def _row_record(self, row: tuple, report: SkipReport) -> ReviewRecord | None:
        """The record in one row with its label columns applied; ``None`` (reported) if it is not a record."""
        seq, row_id, data, label, note, labelled_at = row
        where = f"{self.location} row seq {seq}"
        try:
            record = ReviewRecord.from_parsed(loads_strict(data))
        except (ValueError, TypeError, RecursionError) as exc:  # ValidationError is a ValueError
            why = first_problem(exc) if isinstance(exc, ValidationError) else "not valid JSON"
            report.skip(where, f"skipped a row whose data is not a valid record: {why}")
            return None
        if row_id != pg_text(record.id):
            report.skip(
                where,
                f"skipped a row whose id column {short_repr(row_id)} is not its record's id {short_repr(record.id)}",
            )
            return None
        if label is None:  # the label columns are the truth; data keeps what was written
            return record
        try:
            event = LabelEvent(id=record.id, label=label, note=note, labelled_at=labelled_at)
        except ValidationError as exc:
            report.skip(where, f"ignored malformed label columns: {first_problem(exc)}")
            return record
        return record.with_label(event.label, event.note, event.labelled_at)

    def count(self) -> int:
        """Number of rows (cheap: no JSON is parsed)."""

        def count(conn: Any) -> int:
            if not self._tables_ready(conn, create=False):
                return 0
            return int(conn.execute(self._sql("SELECT count(*) FROM {t}")).fetchone()[0])

        return self._run(None, count)

    def close(self) -> None:
        """Close this process's connections; a later call reconnects (like the file sinks)."""
        pid = os.getpid()
        with self._lock:
            mine = [held for held in self._held if held.pid == pid]
        for held in mine:
            held.conn.close()
        self._local = threading.local()
