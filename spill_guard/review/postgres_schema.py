"""The PostgreSQL review log's tables (schema version 1); layout explained in postgres_sink.

Statements are templates for ``psycopg.sql.SQL(...).format``: ``{t}`` the records table,
``{labels}`` its label events, ``{meta}`` the schema-version table, ``{ix_*}`` index names.
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

    Only the indexed columns and label notes need this; ``data`` is JSON, where both are
    escapes already, so a record read back is exactly the record written.
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
    " data text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {labels} ("
    " seq bigserial PRIMARY KEY,"
    ' record_id text COLLATE "C" NOT NULL REFERENCES {t} (id) ON DELETE CASCADE,'
    " label text NOT NULL,"
    " note text,"
    " labelled_at text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {ix_seq} ON {t} (seq)",
    "CREATE INDEX IF NOT EXISTS {ix_created_at} ON {t} (created_at)",
    "CREATE INDEX IF NOT EXISTS {ix_action} ON {t} (action)",
    "CREATE INDEX IF NOT EXISTS {ix_flagged} ON {t} (flagged)",
    "CREATE INDEX IF NOT EXISTS {ix_score} ON {t} (score)",
    "CREATE INDEX IF NOT EXISTS {ix_label} ON {t} (label)",
    "CREATE INDEX IF NOT EXISTS {ix_labels} ON {labels} (record_id, seq)",
)

# A rewrite takes a new seq, so it moves to the end of the write order as in the other sinks.
INSERT_RECORD = (
    "INSERT INTO {t} (id, created_at, action, flagged, score, label, label_note, labelled_at, data) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET seq = DEFAULT, created_at = EXCLUDED.created_at, action = EXCLUDED.action, "
    "flagged = EXCLUDED.flagged, score = EXCLUDED.score, label = EXCLUDED.label, "
    "label_note = EXCLUDED.label_note, labelled_at = EXCLUDED.labelled_at, data = EXCLUDED.data"
)
