"""Append-only JSONL review log, safe with many threads and processes writing at once.

Layout: one JSON object per line. A record line is a :class:`ReviewRecord` as JSON; a label
is a separate line ``{"event": "label", "id": ..., "label": ..., "note": ..., "labelled_at": ...}``.
Earlier lines are never rewritten, so a reader or a crash can only ever see a prefix of the
history plus, at worst, one torn last line.

Why each write is safe:

* every line (record or label) goes out in one ``os.write`` loop on an ``O_APPEND`` file
  descriptor while holding an exclusive ``flock`` on it, so lines from different processes
  never interleave (``O_APPEND`` alone is not enough for large lines on every filesystem);
* a thread lock serialises threads of one process, which share the descriptor;
* after ``fork`` the child opens its own descriptor: an inherited one shares the parent's
  open file description, and ``flock`` would then not exclude parent and child;
* if the file does not end in ``\\n`` (a writer was killed mid-line), the next writer first
  terminates the torn line so its own record starts on a fresh line;
* ``fsync`` (on by default) makes a returned ``write`` survive a power cut.

Readers take the lock only to learn the current size, then parse that many bytes without
blocking writers; unparseable lines are skipped with a :class:`ReviewLogWarning`.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from spill_guard.review.base import Redactor, ReviewSink
from spill_guard.review.errors import ReviewLogWarning
from spill_guard.review.record import ReviewRecord

LABEL_EVENT = "label"

# Sinks alive in this process, so a forked child can drop the parent's descriptor and locks.
_LIVE_SINKS: "weakref.WeakSet[JsonlSink]" = weakref.WeakSet()


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
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd

    def _append_line(self, obj: dict[str, Any] | str) -> None:
        line = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        payload = line.encode("utf-8") + b"\n"
        with self._lock:
            fd = self._writer_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    payload = b"\n" + payload  # terminate a line torn by a killed writer
                _write_all(fd, payload)
                if self.fsync:
                    os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _append(self, record: ReviewRecord) -> None:
        self._append_line(record.to_json())

    def _append_label(self, record_id: str, label: str, note: str | None, labelled_at: str) -> None:
        self._append_line({"event": LABEL_EVENT, "id": record_id, "label": label, "note": note,
                           "labelled_at": labelled_at})

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
        with f:
            size = self._stable_size(f)
            consumed = 0
            for lineno, raw in enumerate(f, start=1):
                if consumed >= size:
                    break  # appended after we measured: not part of this snapshot
                raw = raw[: size - consumed]
                consumed += len(raw)
                self._apply_line(by_id, raw, lineno)
        return list(by_id.values())

    def _apply_line(self, by_id: dict[str, ReviewRecord], raw: bytes, lineno: int) -> None:
        text = raw.strip()
        if not text:
            return
        where = f"{self.path}:{lineno}"
        try:
            obj = json.loads(text, parse_constant=lambda _constant: None)
        except (json.JSONDecodeError, UnicodeDecodeError):
            torn = "" if raw.endswith(b"\n") else " (no newline: a writer was probably killed mid-write)"
            warnings.warn(f"{where}: skipped a line that is not valid JSON{torn}", ReviewLogWarning, stacklevel=4)
            return
        if not isinstance(obj, dict):
            warnings.warn(f"{where}: skipped a line that is not a JSON object", ReviewLogWarning, stacklevel=4)
            return
        event = obj.get("event")
        if event == LABEL_EVENT:
            record = by_id.get(obj.get("id"))
            if record is None:
                warnings.warn(f"{where}: label for unknown record id {obj.get('id')!r} ignored",
                              ReviewLogWarning, stacklevel=4)
                return
            try:
                by_id[record.id] = record.with_label(obj.get("label"), obj.get("note"), obj.get("labelled_at"))
            except ValueError as exc:
                warnings.warn(f"{where}: bad label event ignored: {exc}", ReviewLogWarning, stacklevel=4)
            return
        if event is not None:
            warnings.warn(f"{where}: unknown event {event!r} ignored", ReviewLogWarning, stacklevel=4)
            return
        try:
            record = ReviewRecord.from_parsed(obj)
        except ValidationError as exc:
            warnings.warn(f"{where}: skipped a line that is not a valid record: {exc.errors()[0]['msg']}",
                          ReviewLogWarning, stacklevel=4)
            return
        by_id.pop(record.id, None)  # a rewrite of an id replaces it and moves it to the end
        by_id[record.id] = record

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
