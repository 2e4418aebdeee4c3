"""Turn the low-level failures of a sink (``OSError``, ``sqlite3.Error``, encoding errors) into
:class:`ReviewLogWriteError` / :class:`ReviewLogReadError` messages that name the log, the
cause and the fix, with the original exception chained by the caller (``raise ... from exc``).
"""

from __future__ import annotations

import errno as errnos
import os
from pathlib import Path

from spill_guard.review.errors import ReviewLogReadError, ReviewLogWriteError

_FIX_BY_ERRNO = {
    errnos.ENOSPC: "free space on that filesystem, or point the log at another disk",
    errnos.EDQUOT: "free space within your disk quota, or point the log at another disk",
    errnos.EACCES: "make the file and its folder writable by this user (chmod/chown), or choose another log path",
    errnos.EPERM: "make the file and its folder writable by this user (chmod/chown), or choose another log path",
    errnos.EROFS: "the filesystem is mounted read-only: choose a log path on a writable filesystem",
    errnos.EISDIR: "the path is a directory: give a file path such as guard.jsonl",
    errnos.ENOTDIR: "a parent of the path is a file, not a folder: choose another log path",
    errnos.ENOENT: "the folder does not exist and could not be created: check the log path",
}

_CHANGED_UNDER_SQLITE = (
    "the database's -wal file was deleted, or the database was truncated or replaced, while it was open "
    "(removed by hand, or another program or code in a process using the log opened and closed the database "
    "file, which drops SQLite's locks); records written since may be lost: stop whatever touches the log's files, "
    "check it with `sqlite3 LOG 'PRAGMA integrity_check'`, and check the filesystem (dmesg) if nothing did"
)

# sqlite3 exceptions carry the SQLite result code name (Python >= 3.11).
_FIX_BY_SQLITE_CODE = {
    "SQLITE_FULL": _FIX_BY_ERRNO[errnos.ENOSPC],
    "SQLITE_READONLY": "make the database file, its folder and its -wal/-shm files writable by this user, "
    "or choose another log path",
    "SQLITE_CANTOPEN": "make the folder writable (SQLite creates -wal and -shm files next to the database), "
    "or choose another log path",
    "SQLITE_BUSY": "another process held the write lock for longer than timeout= seconds: raise timeout= "
    "or find the process that keeps the database locked",
    "SQLITE_LOCKED": "another connection of this process holds the lock: close it, or raise timeout=",
    "SQLITE_NOTADB": "the file is not a SQLite database: point the log at a .sqlite file the guard wrote, "
    "or rename a JSONL log to *.jsonl",
    "SQLITE_CORRUPT": "the database is damaged: move it aside (keep it for recovery with `sqlite3 .recover`) "
    "and start a new log",
    # Before the generic I/O error: these mean the files changed under the connection, not a failing disk.
    "SQLITE_IOERR_SHORT_READ": _CHANGED_UNDER_SQLITE,
    "SQLITE_IOERR_DELETE_NOENT": _CHANGED_UNDER_SQLITE,
    "SQLITE_IOERR": "the disk reported an I/O error: check the filesystem (dmesg), or use another disk",
    "SQLITE_PERM": _FIX_BY_ERRNO[errnos.EACCES],
}

_GENERIC_FIX = "check that the log path is on a local, writable filesystem with free space"


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (errno {exc.errno})"
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else f"{type(exc).__name__}: {exc}"


def on_read_only_filesystem(path: object) -> bool:
    """Whether the filesystem holding ``path`` (or its nearest existing parent) is mounted read-only."""
    where = Path(str(path)).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return bool(os.statvfs(where).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _fix(exc: BaseException, location: object) -> str:
    if isinstance(exc, OSError) and exc.errno in _FIX_BY_ERRNO:
        return _FIX_BY_ERRNO[exc.errno]
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY")) and on_read_only_filesystem(location):
        return _FIX_BY_ERRNO[errnos.EROFS]  # SQLite only says "unable to open" / "readonly"
    for code, fix in _FIX_BY_SQLITE_CODE.items():  # extended codes: SQLITE_READONLY_DBMOVED, ...
        if name == code or name.startswith(code + "_"):
            return fix
    if isinstance(exc, (ValueError, TypeError, RecursionError)):
        return (
            "the record holds a value JSON cannot store (e.g. an integer of more than 4300 digits or "
            "data nested too deep): pass it as a string in metadata"
        )
    return _GENERIC_FIX


def _with_errno(error: OSError, exc: BaseException) -> OSError:
    if isinstance(exc, OSError) and exc.errno is not None:
        error.errno = exc.errno  # code written against OSError can still branch on errno
    return error


def write_error(location: object, exc: BaseException, *, what: str = "record") -> ReviewLogWriteError:
    """The error to raise (``from exc``) when storing a ``what`` in the log at ``location`` failed."""
    message = (
        f"could not write the {what} to the review log {str(location)!r}: {_cause(exc)}; "
        f"{_fix(exc, location)}. Nothing was stored for this {what}; earlier records are unaffected."
    )
    return _with_errno(ReviewLogWriteError(message), exc)  # type: ignore[return-value]


def read_error(location: object, exc: BaseException) -> ReviewLogReadError:
    """The error to raise (``from exc``) when reading the log at ``location`` failed."""
    fix = _fix(exc, location)
    if fix is _FIX_BY_ERRNO.get(errnos.EACCES):
        fix = "make the file (and, for SQLite, its folder) readable by this user"
    message = f"could not read the review log {str(location)!r}: {_cause(exc)}; {fix}."
    return _with_errno(ReviewLogReadError(message), exc)  # type: ignore[return-value]
