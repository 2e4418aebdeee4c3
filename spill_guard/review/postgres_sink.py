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
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from spill_guard.review.base import Redactor, ReviewSink
from spill_guard.review.changes import LogChanges, RecordSummary, stored_summary
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
    ADDED_COLUMNS,
    COLUMNS,
    INDEXED,
    INSERT_RECORD,
    INSERT_RECORD_WITHOUT_ADDED_COLUMNS,
    SCHEMA,
    SCHEMA_LOCK_KEY,
    SCHEMA_TABLE,
    SCHEMA_VERSION,
    UPGRADE,
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


# The transactions (other than this session's) writing rows of the log's two tables now: a writer
# holds its table's RowExclusiveLock from before it takes a seq until it commits.
_WRITERS = (
    "SELECT coalesce(array_agg(DISTINCT virtualtransaction), ARRAY[]::text[]) FROM pg_locks "
    "WHERE locktype = 'relation' AND relation IN (to_regclass(%s), to_regclass(%s)) "
    "AND mode = 'RowExclusiveLock' AND pid IS DISTINCT FROM pg_backend_pid()"
)
# Summary fields taken from the record's JSON (the others are columns), through jsonb: parsed once
# per row in the server, never in Python. jsonb cannot hold NUL (\u0000) or a lone surrogate, so
# data that contains one of those escapes is read whole instead.
_JSON_FIELDS = ("id", "created_at", "threshold", "rule_version", "model", "question", "answer", "original_answer")
_NOT_FOR_JSONB = r"\\u(0000|[dD][89a-fA-F])"


@dataclass(frozen=True)
class _Horizon:
    """Every row up to these seqs is visible once these writers (virtual transaction ids) have ended."""

    record_seq: int
    label_seq: int
    writers: frozenset[str]


@dataclass(frozen=True)
class _PostgresCursor:
    """Where :meth:`PostgresSink.changes` stopped (see there): the tables read (oid and file node of
    each, ``None`` when there were none), the floors, the (id, seq) of records and the seqs of label
    events read above them, and the horizon that will move the floors up."""

    tables: tuple[int, ...] | None = None
    record_floor: int = 0
    label_floor: int = 0
    records_seen: frozenset[tuple[str, int]] = frozenset()
    labels_seen: frozenset[int] = frozenset()
    horizon: _Horizon | None = None


_NOTHING_READ = _PostgresCursor()


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
        self._checked_in_pid: int | None = None  # the process that has verified the tables (and their columns)
        self._upgrade_refused_in_pid: int | None = None  # the process that was refused adding the new columns
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
        if self._lacks_added_columns(conn) and not (create and self._upgrade(conn)):
            return True  # read (or written) without the added columns: _legacy() stays true, the next call looks again
        self._checked_in_pid = os.getpid()
        return True

    def _legacy(self) -> bool:
        """After ``_tables_ready``: whether the log lacks the columns added to schema version 1 (a log
        created by an older spill_guard that this process could not, or did not yet, upgrade)."""
        return self._checked_in_pid != os.getpid()

    def _lacks_added_columns(self, conn: Any) -> bool:
        tables = {"t": self._regclass(self._base), "labels": self._regclass(f"{self._base}_labels")}
        present = conn.execute(
            "SELECT count(*) FROM pg_attribute a JOIN unnest(%s::text[], %s::text[]) AS w(tab, col) "
            "ON a.attrelid = to_regclass(w.tab) AND a.attname = w.col WHERE a.attnum > 0 AND NOT a.attisdropped",
            (
                [tables[table] for table, columns in ADDED_COLUMNS.items() for _ in columns],
                [column for columns in ADDED_COLUMNS.values() for column in columns],
            ),
        ).fetchone()[0]
        return present < sum(len(columns) for columns in ADDED_COLUMNS.values())

    def _upgrade(self, conn: Any) -> bool:
        """Add the columns added to schema version 1 (once per process, under the schema lock);
        ``False`` when this user may not alter the tables (only their owner may): the log is then
        written without them, and a label with a reviewer or a corrected answer is refused."""
        if self._upgrade_refused_in_pid == os.getpid():
            return False
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                for statement in UPGRADE:
                    conn.execute(self._sql(statement))
        except _psycopg().errors.InsufficientPrivilege:
            self._upgrade_refused_in_pid = os.getpid()
            return False
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
            pg_text(record.labelled_by),
            pg_text(record.corrected_answer),
            data,
        )

    def _insert_rows(self, rows: list[tuple]) -> None:
        """Insert (or replace) ``rows``: one statement, or one transaction for several (all or none)."""

        def insert(conn: Any) -> None:
            self._tables_ready(conn, create=True)
            statement, values = INSERT_RECORD, rows
            if self._legacy():  # the owner has not added the new columns yet: rows without them
                self._refuse_added_values([v for row in rows for v in row[8:10]], "a labelled record")
                statement, values = INSERT_RECORD_WITHOUT_ADDED_COLUMNS, [row[:8] + row[10:] for row in rows]
            if len(values) == 1:  # autocommit: the statement is its own transaction
                conn.execute(self._sql(statement), values[0])
                return
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(self._sql(statement), values)

        self._run("record", insert)

    def _refuse_added_values(self, values: list[str | None], what: str) -> None:
        if any(v is not None for v in values):
            raise ReviewLogWriteError(
                f"could not write {what} with a reviewer or a corrected answer to the review log {self.location!r}: "
                f"its tables lack the columns for them and this database user may not add them; let the owner of "
                f"{self.table!r} open the log once to add them (or run: "
                + "; ".join(statement.format(t=self.table, labels=f"{self.table}_labels") for statement in UPGRADE)
                + "). Nothing was stored."
            )

    def _append(self, record: ReviewRecord) -> None:
        self._insert_rows([self._row(record)])

    def _append_many(self, records: list[ReviewRecord]) -> list[Exception | None]:
        return self._commit_encoded(records, self._row, self._insert_rows)

    def _append_label(self, event: LabelEvent) -> None:
        row_id = pg_text(event.id)
        values = (event.label, pg_text(event.note), pg_text(event.labelled_at))
        added = (pg_text(event.reviewer), pg_text(event.corrected_answer))

        def label_it(conn: Any) -> int:
            self._tables_ready(conn, create=True)
            legacy = self._legacy()
            if legacy:
                self._refuse_added_values(list(added), "a label")
            with conn.transaction():  # the UPDATE locks the row, so events are appended in label order
                if legacy:
                    updated = conn.execute(
                        self._sql("UPDATE {t} SET label = %s, label_note = %s, labelled_at = %s WHERE id = %s"),
                        (*values, row_id),
                    ).rowcount
                    if updated:
                        conn.execute(
                            self._sql(
                                "INSERT INTO {labels} (label, note, labelled_at, record_id) VALUES (%s, %s, %s, %s)"
                            ),
                            (*values, row_id),
                        )
                    return updated
                updated = conn.execute(
                    self._sql(
                        "UPDATE {t} SET label = %s, label_note = %s, labelled_at = %s, labelled_by = %s, "
                        "corrected_answer = %s WHERE id = %s"
                    ),
                    (*values, *added, row_id),
                ).rowcount
                if updated:
                    conn.execute(
                        self._sql(
                            "INSERT INTO {labels} (label, note, labelled_at, reviewer, corrected_answer, record_id) "
                            "VALUES (%s, %s, %s, %s, %s, %s)"
                        ),
                        (*values, *added, row_id),
                    )
            return updated

        if not self._run("label", label_it):
            raise RecordNotFoundError(
                f"record {event.id!r} is no longer in {self.location} (removed while labelling); nothing was labelled."
            )

    def _added(self, *columns: str) -> str:
        """SQL for the columns added to schema version 1, or NULLs where the log lacks them."""
        return ", ".join(f"NULL::text AS {c}" if self._legacy() else c for c in columns)

    def _select(self, where: str = "", params: tuple = (), order: str = "seq") -> list[ReviewRecord]:
        def select(conn: Any) -> list[tuple]:
            if not self._tables_ready(conn, create=False):
                return []
            return conn.execute(self._sql(f"{self._record_columns()} {where} ORDER BY {order}"), params).fetchall()

        rows = self._run(None, select)
        report = SkipReport(self.location)
        records = [r for row in rows if (r := self._row_record(row, report)) is not None]
        report.finish()
        return records

    def _with_ids(self, ids: list[str]) -> dict[str, ReviewRecord]:
        return {r.id: r for r in self._select("WHERE id = ANY(%s)", ([pg_text(i) for i in ids],))}

    def _record_columns(self) -> str:
        """``SELECT`` of what :meth:`_row_record` reads, from ``{t}``."""
        added = self._added("labelled_by", "corrected_answer")
        return f"SELECT seq, id, data, label, label_note, labelled_at, {added} FROM {{t}}"

    def records(self) -> list[ReviewRecord]:
        return self._select()

    def _matching(self, prefix: str) -> list[ReviewRecord]:
        # LIKE 'prefix%' on a C-collation primary key is an index range scan.
        key = pg_text(prefix)
        pattern = re.sub(r"([\\%_])", r"\\\1", key) + "%"
        return self._select("WHERE id LIKE %s ESCAPE '\\'", (pattern, key), order="id = %s DESC, seq")[:2]

    def _row_record(self, row: tuple, report: SkipReport) -> ReviewRecord | None:
        """The record in one row with its label columns applied; ``None`` (reported) if it is not a record."""
        seq, row_id, data = row[:3]
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
        # the label columns are the truth; data keeps what was written
        event = self._stored_label(record.id, tuple(row[3:8]), where, report)
        return record if event is None else record.with_event(event)

    # -- changes -------------------------------------------------------------------------
    def changes(self, cursor: object | None = None) -> LogChanges:
        """What was written since ``cursor``: the rows past its seqs, read in one snapshot, with
        summaries made in SQL (the JSON fields through ``jsonb``; a row that does not make a summary
        that way is read whole, as :meth:`records` reads it).

        ``seq`` values are taken when a row is written but become visible when its transaction
        commits, so a row can appear *below* a seq already read (two writers: the one that took
        the smaller seq commits later). A cursor therefore does not stop at the highest seq read.
        It keeps a *floor*, below which every row that will ever be committed has been read, and
        the (id, seq) of the rows read above it, which are not given again. The floor moves up to:

        * what was visible just before this read's snapshot, when no transaction was writing the
          log's tables at that moment (a writer holds its table's ``RowExclusiveLock`` from before
          it takes a seq until it commits, and a seq taken later is higher than any visible one);
        * the highest seqs of the previous read, once every transaction that was writing at that
          read (after its snapshot) has ended before this one's snapshot.

        So each call reads what is new plus the rows of about the last two calls. A transaction
        that writes the log and stays open holds the floor where it is until it ends (each call
        then reads everything since). A cursor is no longer valid (``reset=True``) when a table was
        dropped and created again, truncated, or holds only smaller seqs than it had seen.
        """
        since = cursor if isinstance(cursor, _PostgresCursor) else None
        return self._run(None, lambda conn: self._changes(conn, since))

    def _changes(self, conn: Any, since: _PostgresCursor | None) -> LogChanges:
        if not self._tables_ready(conn, create=False):
            return LogChanges([], [], _NOTHING_READ, reset=since != _NOTHING_READ)
        names = (self._regclass(self._base), self._regclass(f"{self._base}_labels"))
        visible_r, visible_l, writers_before = conn.execute(
            self._sql(f"SELECT (SELECT max(seq) FROM {{t}}), (SELECT max(seq) FROM {{labels}}), ({_WRITERS})"),
            names,
        ).fetchone()
        report = SkipReport(self.location)
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            tables, top_r, top_l = conn.execute(  # the first query: the snapshot every query below sees
                self._sql(
                    "SELECT ARRAY[to_regclass(%s)::oid::bigint, pg_relation_filenode(to_regclass(%s))::bigint, "
                    "to_regclass(%s)::oid::bigint, pg_relation_filenode(to_regclass(%s))::bigint], "
                    "(SELECT coalesce(max(seq), 0) FROM {t}), (SELECT coalesce(max(seq), 0) FROM {labels})"
                ),
                (names[0], names[0], names[1], names[1]),
            ).fetchone()
            tables = tuple(tables)
            valid = (
                since is not None
                and since.tables in (None, tables)
                and since.record_floor <= top_r
                and since.label_floor <= top_l
            )
            start = since if since is not None and valid else _NOTHING_READ
            read, records = self._summary_rows(conn, start.record_floor, start.records_seen, report)
            label_rows = conn.execute(
                self._sql(
                    "SELECT seq, record_id, label, note, labelled_at, "
                    f"{self._added('reviewer', 'corrected_answer')} FROM {{labels}} WHERE seq > %s ORDER BY seq"
                ),
                (start.label_floor,),
            ).fetchall()
            writers_after = conn.execute(_WRITERS, names).fetchone()[0]
        labels = [
            event
            for row in label_rows
            if row[0] not in start.labels_seen and (event := self._label_event(row, report)) is not None
        ]
        report.finish()
        floor_r, floor_l, horizon = start.record_floor, start.label_floor, start.horizon
        if not writers_before:  # everything visible before the snapshot was in it, and later seqs are higher
            floor_r, floor_l = max(floor_r, visible_r or 0), max(floor_l, visible_l or 0)
        if horizon is not None and not set(horizon.writers) & set(writers_before):
            floor_r, floor_l = max(floor_r, horizon.record_seq), max(floor_l, horizon.label_seq)
            horizon = None
        if horizon is None:
            horizon = _Horizon(
                max([floor_r, *(seq for _, seq in read)]),
                max([floor_l, *(row[0] for row in label_rows)]),
                frozenset(writers_after),
            )
        after = _PostgresCursor(
            tables=tables,
            record_floor=floor_r,
            label_floor=floor_l,
            records_seen=frozenset(key for key in read if key[1] > floor_r),
            labels_seen=frozenset(row[0] for row in label_rows if row[0] > floor_l),
            horizon=horizon,
        )
        return LogChanges(records, labels, after, reset=not valid)

    def _summary_rows(
        self, conn: Any, floor: int, seen: frozenset[tuple[str, int]], report: SkipReport
    ) -> tuple[list[tuple[str, int]], list[RecordSummary]]:
        """The (id, seq) of every row past ``floor``, and the summaries of those not in ``seen`` (rows
        that are not records are reported and left out), in seq order."""
        added = self._added("labelled_by", "corrected_answer")
        fields = ", ".join(f"r.{name}" for name in _JSON_FIELDS)
        typed = ", ".join(f"{name} jsonb" for name in _JSON_FIELDS)
        fast = self._sql(
            f"SELECT t.seq, t.id, t.action, t.flagged, t.score, t.label, t.label_note, t.labelled_at, "
            f"{added}, CASE WHEN t.data !~ %s THEN (SELECT jsonb_build_array({fields})::text "
            f"FROM jsonb_to_record(t.data::jsonb) AS r({typed})) END FROM {{t}} AS t WHERE t.seq > %s ORDER BY t.seq"
        )
        try:
            with conn.transaction():  # a savepoint: data that is not a JSON object fails the query
                rows = conn.execute(fast, (_NOT_FOR_JSONB, floor)).fetchall()
        except _psycopg().errors.DataError:  # read every row whole instead, as records() does
            rows = None
        if rows is None:
            rows = conn.execute(self._sql(f"{self._record_columns()} WHERE seq > %s ORDER BY seq"), (floor,)).fetchall()
            read = [(row[1], row[0]) for row in rows]
            wholes = [self._row_record(row, report) for row in rows if (row[1], row[0]) not in seen]
            return read, [RecordSummary.of(r) for r in wholes if r is not None]
        read, summaries = [], []
        for row in rows:
            read.append((row[1], row[0]))
            if (row[1], row[0]) in seen:
                continue
            summary = self._summary(row, report)
            if summary is None:  # not a summary from its fields: the whole row decides
                [whole] = conn.execute(self._sql(f"{self._record_columns()} WHERE seq = %s"), (row[0],)).fetchall()
                record = self._row_record(whole, report)
                summary = None if record is None else RecordSummary.of(record)
            if summary is not None:
                summaries.append(summary)
        return read, summaries

    def _summary(self, row: tuple, report: SkipReport) -> RecordSummary | None:
        """The summary of a row from its columns and JSON fields; ``None`` when they do not make one."""
        seq, row_id, action, flagged, score = row[:5]
        extracted = row[-1]
        if extracted is None:
            return None
        fields = dict(zip(_JSON_FIELDS, loads_strict(extracted)))
        record_id = fields["id"]
        if not isinstance(record_id, str) or pg_text(record_id) != row_id or fields["model"] is None:
            return None  # another id than the column's, or no model (the record's default decides)
        fields.update(action=action, flagged=flagged, score=score)
        try:
            stored = stored_summary(fields, None)
        except ValidationError:
            return None
        event = self._stored_label(record_id, tuple(row[5:10]), f"{self.location} row seq {seq}", report)
        return stored if event is None else stored.with_event(event)

    def _label_event(self, row: tuple, report: SkipReport) -> LabelEvent | None:
        seq, record_id, *columns = row
        where = f"{self.location} label seq {seq}"
        return self._event_of(record_id, tuple(columns), where, report, "skipped a malformed label event")

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
