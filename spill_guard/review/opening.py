"""Open a review log by its file suffix, and read back the human-labelled records."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spill_guard.review.base import Redactor, ReviewSink
from spill_guard.review.errors import UnsupportedLogFormatError
from spill_guard.review.jsonl_sink import JsonlSink
from spill_guard.review.postgres_sink import PostgresSink, is_postgres_url
from spill_guard.review.record import ReviewRecord
from spill_guard.review.sqlite_sink import SqliteSink

JSONL_SUFFIXES = (".jsonl",)
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")


def sink_class(path: str | os.PathLike) -> type[ReviewSink]:
    """The sink class :func:`open_log` would use for ``path`` (nothing is opened), or the error it would raise."""
    if is_postgres_url(path):  # postgresql://user@host:5432/db[#table]
        return PostgresSink
    suffix = Path(path).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return JsonlSink
    if suffix in SQLITE_SUFFIXES:
        return SqliteSink
    raise UnsupportedLogFormatError(
        f"cannot tell the review-log format of {str(path)!r} from its suffix {suffix or '(none)'!r}; "
        f"name it *.jsonl (append-only JSON lines) or *.sqlite / *.sqlite3 / *.db (SQLite), "
        f"or give a postgresql:// URL."
    )


def open_log(path: str | os.PathLike, *, redact: Redactor | None = None, **options: Any) -> ReviewSink:
    """A sink for ``path``: ``.jsonl`` -> :class:`JsonlSink`, ``.sqlite``/``.sqlite3``/``.db`` -> :class:`SqliteSink`,
    ``postgresql://...`` -> :class:`PostgresSink`.

    ``options`` go to the sink (``fsync=``, and ``timeout=`` for SQLite). The file is created
    on the first write; reading a missing log gives no records.
    """
    # Each sink class takes the path (a URL for PostgreSQL) first; their __init__s differ from ReviewSink's.
    opener: Callable[..., ReviewSink] = sink_class(path)
    return opener(path, redact=redact, **options)


def as_sink(log: Any) -> Any:
    """What a guard or wrapper was given as ``log``: ``None`` (no log), a path, or a ready sink.

    A path is opened with :func:`open_log`; any object with a ``write(record)`` method is
    used as it is (e.g. your own sink forwarding to a queue).
    """
    if log is None:
        return None
    if isinstance(log, (str, os.PathLike)):
        return open_log(log)
    if callable(getattr(log, "write", None)):
        return log
    from spill_guard.errors import InvalidParameterError

    raise InvalidParameterError(
        f"log must be a path (.jsonl / .sqlite), a postgresql:// URL or a review sink with .write(record), got {log!r}."
    )


def labelled_records(log: str | os.PathLike | ReviewSink) -> list[ReviewRecord]:
    """Records that a human labelled ``correct`` / ``incorrect`` (latest label), in write order.

    ``log`` is a path (opened and closed here) or an open sink (left open).
    """
    if isinstance(log, ReviewSink):
        return log.labelled()
    with open_log(log) as sink:
        return sink.labelled()
