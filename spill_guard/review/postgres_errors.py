"""What a PostgreSQL failure means for a review log, in a message that names the fix.

Messages carry the log's URL with the password masked, and the driver's own text with any
copy of the password scrubbed out. A cause whose text held the password is not chained, so
a traceback printed by a server's error handler cannot leak it either.
"""

from __future__ import annotations

from spill_guard.review.errors import ReviewLogError, ReviewLogReadError, ReviewLogWriteError
from spill_guard.review.postgres_url import scrub


class PostgresNotInstalledError(ReviewLogError, ImportError):
    """A ``postgresql://`` log was asked for but psycopg is not installed."""


# By SQLSTATE (https://www.postgresql.org/docs/15/errcodes-appendix.html).
_FIX_BY_SQLSTATE = {
    "42501": "grant this user SELECT, INSERT and UPDATE on the log's tables (and CREATE on the schema, for a new log)",
    "25006": "the server is a read-only standby: point the URL at the primary",
    "3D000": "create the database first (createdb), or fix the database name in the URL",
    "53300": "the server has no free connection slots: raise max_connections or put a pooler in front",
    "57P01": "the server is shutting down or restarting: retry when it is back",
    "53100": "the server's disk is full: free space on the database server",
}
CONNECT_FIX = "check that the server is running and reachable, and the URL's host, port, database, user and password"
LOST_FIX = "the server closed the connection twice in a row: check that it is up"
_GENERIC_FIX = "see the PostgreSQL server's log for the cause"


def fix_for(exc: BaseException) -> str:
    return _FIX_BY_SQLSTATE.get(getattr(exc, "sqlstate", None) or "", _GENERIC_FIX)


def failure(
    location: str, what: str | None, cause: BaseException | None, fix: str, secrets: list[str]
) -> ReviewLogError:
    """The error for a failed write of ``what`` (``None``: a failed read) of the log at ``location``."""
    detail = " ".join(scrub(str(cause), secrets).split()) or type(cause).__name__
    state = getattr(cause, "sqlstate", None)
    detail = f"{type(cause).__name__}{f' ({state})' if state else ''}: {detail}"
    if what is None:
        return ReviewLogReadError(f"could not read the review log {location!r}: {detail}; {fix}.")
    again = " Writing the same record again is safe: it replaces, never duplicates." if what == "record" else ""
    return ReviewLogWriteError(f"could not write the {what} to the review log {location!r}: {detail}; {fix}.{again}")


def chainable(exc: BaseException | None, secrets: list[str]) -> BaseException | None:
    """The cause to chain, unless its message echoes the password (libpq quotes bad URL parts)."""
    return None if exc is None or scrub(str(exc), secrets) != str(exc) else exc
