"""Append-only JSONL review log, safe with many threads and processes writing at once.

Layout: one JSON object per line. A record line is a :class:`ReviewRecord` as JSON; a label
is a separate line ``{"event": "label", "id": ..., "label": ..., "note": ..., "labelled_at": ...}``.
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
blocking writers. A line that is not a record or a well-formed label event (torn, not JSON,
JSON of another shape) is skipped with a :class:`ReviewLogWarning` naming its line number,
and reading goes on.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from spill_guard.review.base import Redactor, ReviewSink
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

    def _append_label(self, record_id: str, label: str, note: str | None, labelled_at: str) -> None:
        event = {"event": LABEL_EVENT, "id": record_id, "label": label, "note": note, "labelled_at": labelled_at}
        try:
            line = dumps_line(event)
        except (ValueError, TypeError, RecursionError) as exc:
            raise write_error(self.path, exc, what="label") from exc
        self._append_lines([line], "label")

    def _stable_size(self, f: Any) -> int:
        """File size at a moment when no writer is mid-line (writers hold the lock per line)."""
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        try:
            return os.fstat(f.fileno()).st_size
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def records(self) -> list[ReviewRecord]:
        """Replay the log: records in write order, labels applied in order (latest wins)."""
        by_id: dict[str, ReviewRecord] = {}
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise read_error(self.path, exc) from exc
        report = SkipReport(self.path)
        with f:
            try:
                size = self._stable_size(f)
                self._refuse_sqlite(os.pread(f.fileno(), len(SQLITE_HEADER), 0))
                consumed = 0
                for lineno, raw in enumerate(f, start=1):
                    if consumed >= size:
                        break  # appended after we measured: not part of this snapshot
                    raw = raw[: size - consumed]
                    consumed += len(raw)
                    self._apply_line(by_id, raw, lineno, report)
            except ReviewLogError:
                raise
            except OSError as exc:
                raise read_error(self.path, exc) from exc
        report.finish()
        return list(by_id.values())

    def _apply_line(self, by_id: dict[str, ReviewRecord], raw: bytes, lineno: int, report: SkipReport) -> None:
        text = raw.strip()
        if not text:
            return
        where = f"{self.path}:{lineno}"
        try:
            obj = loads_strict(text)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting or digits
            torn = "" if raw.endswith(b"\n") else " (no newline: a writer was probably killed mid-write)"
            report.skip(where, f"skipped a line that is not valid JSON{torn}")
            return
        if not isinstance(obj, dict):
            report.skip(where, f"skipped a line that is a JSON {type(obj).__name__}, not an object")
            return
        event = obj.get("event")
        if event == LABEL_EVENT:
            try:
                label = LabelEvent.model_validate(obj)
            except ValidationError as exc:
                report.skip(where, f"skipped a malformed label event: {first_problem(exc)}")
                return
            record = by_id.get(label.id)
            if record is None:
                report.skip(where, f"label for unknown record id {short_repr(label.id)} ignored")
                return
            by_id[record.id] = record.with_label(label.label, label.note, label.labelled_at)
            return
        if event is not None:
            report.skip(where, f"unknown event {short_repr(event)} ignored")
            return
        try:
            record = ReviewRecord.from_parsed(obj)
        except ValidationError as exc:
            report.skip(where, f"skipped a line that is not a valid record: {first_problem(exc)}")
            return
        by_id.pop(record.id, None)  # a rewrite of an id replaces it and moves it to the end
        by_id[record.id] = record

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
