"""The PostgreSQL review log's tables (schema version 1); layout explained in postgres_sink.

Statements are templates for ``psycopg.sql.SQL(...).format``: ``{t}`` the records table,
``{labels}`` its label events, ``{meta}`` the schema-version table, ``{ix_*}`` index names.

The reviewer and corrected-answer columns came later. They are additive (nullable columns that
a reader of the first layout ignores, and whose absence a reader of this one tolerates), so
the schema version stays 1: ``UPGRADE`` adds them to a log created without them.
"""

from __future__ import annotations

from typing import overload

from spill_guard.review.jsontext import escape_surrogates

SCHEMA_VERSION = 1
SCHEMA_TABLE = "spill_guard_schema"
# One advisory-lock key for every spill_guard log: creators of different logs in one database
# share spill_guard_schema, and CREATE TABLE IF NOT EXISTS races without a lock.
SCHEMA_LOCK_KEY = 0x5350_494C_4C47  # "SPILLG"
INDEXED = ("seq", "created_at", "action", "flagged", "score", "label")


@overload
def pg_text(value: str) -> str: ...


@overload
def pg_text(value: None) -> None: ...


def pg_text(value: str | None) -> str | None:
    """``value`` as PostgreSQL ``text`` can hold it: NUL and lone surrogates become ``\\uXXXX`` escapes.

    Only the indexed columns and the label columns (note, reviewer, corrected answer) need this;
    ``data`` is JSON, where both are escapes already, so a record read back is exactly the record
    written.
    """
    if value is None or ("\x00" not in value and _encodable(value)):
        return value
    return escape_surrogates(value).replace("\x00", "\\u0000")


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


COLUMNS = ("id", "seq", "created_at", "action", "flagged", "score", "label", "label_note", "labelled_at", "data")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {meta} (log_table text PRIMARY KEY, version integer NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS {t} ("
    ' id text COLLATE "C" PRIMARY KEY,'
    " seq bigserial NOT NULL,"
    " created_at text NOT NULL,"
    " action text NOT NULL,"
    " flagged boolean NOT NULL,"
    " score double precision,"
    " label text,"
    " label_note text,"
    " labelled_at text,"
    " labelled_by text,"
    " corrected_answer text,"
    " data text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {labels} ("
    " seq bigserial PRIMARY KEY,"
    ' record_id text COLLATE "C" NOT NULL REFERENCES {t} (id) ON DELETE CASCADE,'
    " label text NOT NULL,"
    " note text,"
    " labelled_at text NOT NULL,"
    " reviewer text,"
    " corrected_answer text)",
    "CREATE INDEX IF NOT EXISTS {ix_seq} ON {t} (seq)",
    "CREATE INDEX IF NOT EXISTS {ix_created_at} ON {t} (created_at)",
    "CREATE INDEX IF NOT EXISTS {ix_action} ON {t} (action)",
    "CREATE INDEX IF NOT EXISTS {ix_flagged} ON {t} (flagged)",
    "CREATE INDEX IF NOT EXISTS {ix_score} ON {t} (score)",
    "CREATE INDEX IF NOT EXISTS {ix_label} ON {t} (label)",
    "CREATE INDEX IF NOT EXISTS {ix_labels} ON {labels} (record_id, seq)",
)

# Columns added to schema version 1 after its first release (see the module doc), per table.
ADDED_COLUMNS = {"t": ("labelled_by", "corrected_answer"), "labels": ("reviewer", "corrected_answer")}
UPGRADE = tuple(
    f"ALTER TABLE {{{table}}} ADD COLUMN IF NOT EXISTS {column} text"
    for table, columns in ADDED_COLUMNS.items()
    for column in columns
)

# A rewrite takes a new seq, so it moves to the end of the write order as in the other sinks.
RECORD_COLUMNS = (
    "id",
    "created_at",
    "action",
    "flagged",
    "score",
    "label",
    "label_note",
    "labelled_at",
    "labelled_by",
    "corrected_answer",
    "data",
)


def _insert_record(columns: tuple[str, ...]) -> str:
    return (
        f"INSERT INTO {{t}} ({', '.join(columns)}) VALUES ({', '.join('%s' for _ in columns)}) "
        "ON CONFLICT (id) DO UPDATE SET seq = DEFAULT, "
        + ", ".join(f"{column} = EXCLUDED.{column}" for column in columns if column != "id")
    )


INSERT_RECORD = _insert_record(RECORD_COLUMNS)
# For a log whose owner has not added the new columns yet (postgres_sink's _upgrade).
INSERT_RECORD_WITHOUT_ADDED_COLUMNS = _insert_record(tuple(c for c in RECORD_COLUMNS if c not in ADDED_COLUMNS["t"]))
