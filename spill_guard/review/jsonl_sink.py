"""Append-only JSONL review log, safe with many threads and processes writing at once.

Layout: one JSON object per line. A record line is a :class:`ReviewRecord` as JSON; a label
is a separate line ``{"event": "label", "id": ..., "label": ..., "note": ..., "labelled_at": ...,
"reviewer": ..., "corrected_answer": ...}`` (the last two are absent in lines written before
they existed). Every label line is kept: they are the label history.
Earlier lines are never rewritten, so a reader or a crash can only ever see a prefix of the
history plus, at worst, one torn last line.

Why each write is safe:

* every line (record or label), or every batch of lines (``write_many``), goes out in one
  ``os.write`` loop on an ``O_APPEND`` file descriptor while holding an exclusive ``flock``
  on it, so lines from different processes never interleave (``O_APPEND`` alone is not
  enough for large lines on every filesystem);
* a thread lock serialises threads of one process, which share the descriptor;
* after ``fork`` the child opens its own descriptor: an inherited one shares the parent's
  open file description, and ``flock`` would then not exclude parent and child;
* if the file does not end in ``\\n`` (a writer was killed mid-line), the next writer first
  terminates the torn line so its own record starts on a fresh line;
* ``fsync`` (on by default) makes a returned ``write`` survive a power cut; a ``write_many``
  batch is one write and one ``fsync``.

* if a write fails half-way (full disk), the file is truncated back to where the line (or
  the batch) began, so the log never keeps half a record; the failure is a
  :class:`ReviewLogWriteError`.

Readers take the lock only to learn the current size, then parse that many bytes without
blocking writers (:meth:`JsonlSink.changes` parses only the bytes after its cursor). A line
that is not a record or a well-formed label event (torn, not JSON, JSON of another shape) is
skipped with a :class:`ReviewLogWarning` naming its line number, and reading goes on.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from spill_guard.review.base import Redactor, ReviewSink
from spill_guard.review.changes import LogChanges, RecordSummary
from spill_guard.review.errors import NotAReviewLogError, ReviewLogError, ReviewLogWriteError
from spill_guard.review.io_errors import read_error, write_error
from spill_guard.review.jsontext import dumps_line, loads_strict
from spill_guard.review.record import LabelEvent, ReviewRecord
from spill_guard.review.skipped import SkipReport, first_problem, short_repr
from spill_guard.review.sqlite_sink import SQLITE_HEADER

LABEL_EVENT = "label"

# Sinks alive in this process, so a forked child can drop the parent's descriptor and locks.
_LIVE_SINKS: weakref.WeakSet[JsonlSink] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for sink in list(_LIVE_SINKS):
        sink._forget_parent_state()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _digest(line: bytes) -> bytes:
    return hashlib.blake2b(line, digest_size=16).digest()


@dataclass(frozen=True)
class _JsonlCursor:
    """Where :meth:`JsonlSink.changes` stopped reading a file.

    ``device``/``inode`` name the file (``None``: there was no log); ``offset`` is the end of the
    last complete line read, ``lineno`` the number of lines before it (for warnings), and
    ``last_line`` the start and digest of the line that ends at ``offset``, to notice a file that
    was truncated and written again. ``first_seen`` maps each record id to the offset of its first
    record line, so a label event of an id with no record line before it is skipped as
    :meth:`JsonlSink.records` skips it. It is shared by the cursors of one chain of calls and only
    grows (an id's first offset never changes in a file that is only appended to), so a call costs
    the lines it reads, not a copy of every id.
    """

    device: int | None
    inode: int | None
    offset: int
    lineno: int
    last_line: tuple[int, bytes]
    first_seen: dict[str, int] = field(compare=False, repr=False)

    @classmethod
    def at_start(cls, stat: os.stat_result | None) -> _JsonlCursor:
        if stat is None:
            return cls(None, None, 0, 0, (0, b""), {})
        return cls(stat.st_dev, stat.st_ino, 0, 0, (0, b""), {})


class JsonlSink(ReviewSink):
    """Review log in an append-only ``.jsonl`` file (created on the first write)."""

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True, redact: Redactor | None = None) -> None:
        super().__init__(redact=redact)
        self.path = Path(path)
        self.fsync = fsync
        self._fd: int | None = None
        self._lock = threading.Lock()
        _LIVE_SINKS.add(self)

    def _forget_parent_state(self) -> None:
        # Runs in a fresh fork child (single-threaded): the parent's lock may have been held
        # by a thread that does not exist here, and its descriptor must not be shared.
        self._lock = threading.Lock()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _writer_fd(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                self._refuse_sqlite(os.pread(fd, len(SQLITE_HEADER), 0))
            except NotAReviewLogError as exc:
                os.close(fd)
                raise ReviewLogWriteError(str(exc)) from exc
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def _refuse_sqlite(self, head: bytes) -> None:
        # Appending JSON lines to a SQLite database would damage it; reading it would print a
        # warning per binary "line". Either way the user named the file with the wrong suffix.
        if head == SQLITE_HEADER:
            raise NotAReviewLogError(
                f"{self.path} is a SQLite database, not a JSONL review log; open it with a .sqlite or .db "
                "suffix (rename it, e.g. `mv guard.jsonl guard.sqlite`), or give another path for a JSONL log."
            )

    def _append_lines(self, lines: list[str], what: str) -> None:
        """Append ``lines`` (JSON, no newline) with one write and one fsync, all or none."""
        payload = "".join(line + "\n" for line in lines).encode("utf-8")  # dumps_line escaped lone surrogates
        with self._lock:
            try:
                fd = self._writer_fd()
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise write_error(self.path, exc, what=what) from exc
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    payload = b"\n" + payload  # terminate a line torn by a killed writer
                try:
                    _write_all(fd, payload)
                    if self.fsync:
                        os.fsync(fd)
                except OSError:
                    self._truncate(fd, size)
                    raise
            except OSError as exc:
                raise write_error(self.path, exc, what=what) from exc
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    @staticmethod
    def _truncate(fd: int, size: int) -> None:
        # We hold the exclusive lock, so nothing after `size` is anyone else's: drop our
        # partial line instead of leaving half a record. Shrinking needs no free space.
        try:
            os.ftruncate(fd, size)
        except OSError:
            pass  # the reader's torn-line handling still copes

    def _record_line(self, record: ReviewRecord) -> str:
        try:
            return record.to_json()
        except (ValueError, TypeError, RecursionError) as exc:
            raise write_error(self.path, exc) from exc

    def _record_lines(self, lines: list[str]) -> None:
        self._append_lines(lines, "record")

    def _append(self, record: ReviewRecord) -> None:
        self._record_lines([self._record_line(record)])

    def _append_many(self, records: list[ReviewRecord]) -> list[Exception | None]:
        return self._commit_encoded(records, self._record_line, self._record_lines)

    def _append_label(self, event: LabelEvent) -> None:
        try:
            line = dumps_line({"event": LABEL_EVENT, **event.model_dump()})
        except (ValueError, TypeError, RecursionError) as exc:
            raise write_error(self.path, exc, what="label") from exc
        self._append_lines([line], "label")

    # -- reading ------------------------------------------------------------------------
    def _stable_size(self, f: Any) -> int:
        """File size at a moment when no writer is mid-line (writers hold the lock per line)."""
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        try:
            return os.fstat(f.fileno()).st_size
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[tuple[BinaryIO, os.stat_result, int] | None]:
        """The open log, its ``stat`` and the size to read up to (``None``: no log yet); an OS
        failure while reading it (here or in the block) is a ReviewLogReadError."""
        try:
            f: BinaryIO | None = open(self.path, "rb")
        except FileNotFoundError:
            f = None
        except OSError as exc:
            raise read_error(self.path, exc) from exc
        if f is None:
            yield None
            return
        with f:
            try:
                size = self._stable_size(f)
                self._refuse_sqlite(os.pread(f.fileno(), len(SQLITE_HEADER), 0))
                yield f, os.fstat(f.fileno()), size
            except ReviewLogError:
                raise
            except OSError as exc:
                raise read_error(self.path, exc) from exc

    @staticmethod
    def _lines(f: BinaryIO, offset: int, size: int) -> Iterator[tuple[int, bytes]]:
        """``(offset, line)`` of each line from ``offset`` that starts before ``size``, cut at ``size``:
        bytes appended after the size was measured are not part of this read. The last line may
        lack its newline (torn by a killed writer)."""
        f.seek(offset)
        for raw in f:
            if offset >= size:
                break
            raw = raw[: size - offset]
            yield offset, raw
            offset += len(raw)

    def records(self) -> list[ReviewRecord]:
        """Replay the log: records in write order, labels applied in order (latest wins)."""
        by_id: dict[str, ReviewRecord] = {}
        report = SkipReport(self.path)
        with self._snapshot() as snapshot:
            if snapshot is None:
                return []
            f, _, size = snapshot
            for lineno, (_, raw) in enumerate(self._lines(f, 0, size), start=1):
                item = self._parsed(raw, lineno, report)
                if isinstance(item, ReviewRecord):
                    by_id.pop(item.id, None)  # a rewrite of an id replaces it and moves it to the end
                    by_id[item.id] = item
                elif item is not None:
                    record = by_id.get(item.id)
                    if record is None:
                        self._unknown_label(item, lineno, report)
                    else:
                        by_id[record.id] = record.with_event(item)
        report.finish()
        return list(by_id.values())

    def changes(self, cursor: object | None = None) -> LogChanges:
        """What was appended since ``cursor``: only the bytes after it are read.

        The cursor holds the file's device and inode, the end of the last complete line read and
        a digest of that line: a log replaced by another file (another inode), truncated, or
        truncated and written again (the line before the cursor differs) answers with
        ``reset=True``. A last line without its newline (a writer is mid-line, or was killed) is
        not consumed: a later call reads it once it is complete. A line that is not a record or
        a label event is skipped with the warning :meth:`records` gives, once.
        """
        since = cursor if isinstance(cursor, _JsonlCursor) else None
        report = SkipReport(self.path)
        with self._snapshot() as snapshot:
            if snapshot is None:  # no log: nothing new, unless there was a log before
                return LogChanges([], [], _JsonlCursor.at_start(None), reset=since is None or since.inode is not None)
            f, stat, size = snapshot
            if since is not None and since.inode is None:
                start, reset = _JsonlCursor.at_start(stat), False  # the log was created since: all of it is new
            elif since is not None and self._continues(f, stat, size, since):
                start, reset = since, False
            else:
                start, reset = _JsonlCursor.at_start(stat), True
            summaries: dict[str, RecordSummary] = {}
            labels: list[LabelEvent] = []
            end, lineno, last_line, first_seen = start.offset, start.lineno, start.last_line, start.first_seen
            for offset, raw in self._lines(f, start.offset, size):
                if not raw.endswith(b"\n"):
                    break  # torn or still being written: read it once it is complete
                lineno += 1
                item = self._parsed(raw, lineno, report)
                if isinstance(item, ReviewRecord):
                    first_seen.setdefault(item.id, offset)
                    summaries.pop(item.id, None)
                    summaries[item.id] = RecordSummary.of(item)
                elif item is not None:
                    if first_seen.get(item.id, offset) >= offset:  # no record line of that id before this one
                        self._unknown_label(item, lineno, report)
                    else:
                        labels.append(item)
                        if item.id in summaries:
                            summaries[item.id] = summaries[item.id].with_event(item)
                end, last_line = offset + len(raw), (offset, _digest(raw))
        report.finish()
        after = _JsonlCursor(stat.st_dev, stat.st_ino, end, lineno, last_line, first_seen)
        return LogChanges(list(summaries.values()), labels, after, reset)

    @staticmethod
    def _continues(f: BinaryIO, stat: os.stat_result, size: int, since: _JsonlCursor) -> bool:
        """Whether ``since`` is a cursor into this very file, which still holds what it had read."""
        if (stat.st_dev, stat.st_ino) != (since.device, since.inode) or size < since.offset:
            return False
        start, digest = since.last_line
        return since.offset == 0 or _digest(os.pread(f.fileno(), since.offset - start, start)) == digest

    def _unknown_label(self, event: LabelEvent, lineno: int, report: SkipReport) -> None:
        report.skip(f"{self.path}:{lineno}", f"label for unknown record id {short_repr(event.id)} ignored")

    def _parsed(self, raw: bytes, lineno: int, report: SkipReport) -> ReviewRecord | LabelEvent | None:
        """The record or label event on one line; ``None`` (reported) for a line that is neither."""
        text = raw.strip()
        if not text:
            return None
        where = f"{self.path}:{lineno}"
        try:
            obj = loads_strict(text)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting or digits
            torn = "" if raw.endswith(b"\n") else " (no newline: a writer was probably killed mid-write)"
            report.skip(where, f"skipped a line that is not valid JSON{torn}")
            return None
        if not isinstance(obj, dict):
            report.skip(where, f"skipped a line that is a JSON {type(obj).__name__}, not an object")
            return None
        event = obj.get("event")
        if event == LABEL_EVENT:
            try:
                return LabelEvent.model_validate(obj)
            except ValidationError as exc:
                report.skip(where, f"skipped a malformed label event: {first_problem(exc)}")
                return None
        if event is not None:
            report.skip(where, f"unknown event {short_repr(event)} ignored")
            return None
        try:
            return ReviewRecord.from_parsed(obj)
        except ValidationError as exc:
            report.skip(where, f"skipped a line that is not a valid record: {first_problem(exc)}")
            return None

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
