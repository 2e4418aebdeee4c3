"""Write an output file atomically: readers see the old file or the new one, never half of either.

``review export`` and ``review html`` write reports that people open while they are being
rewritten, and a failed write (full disk, Ctrl-C) must not leave a truncated report where a
good one was. The text goes to a temporary file in the target's folder (same filesystem, so
the rename is atomic), is flushed to disk, and then ``os.replace`` puts it in place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file (0o666 minus the umask)."""
    try:  # Linux exposes the umask without changing it; os.umask() would, for every thread
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


@contextlib.contextmanager
def atomic_text_file(
    path: str | os.PathLike, *, newline: str | None = None, errors: str = "strict"
) -> Iterator[TextIO]:
    """``with atomic_text_file(p) as f: f.write(...)``: ``p`` is replaced only if the block succeeds.

    A symlink is followed (its target is replaced, the link stays); an existing file keeps its
    permission bits. On any exception the temporary file is removed and ``p`` is untouched.
    """
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with open(fd, "w", encoding="utf-8", newline=newline, errors=errors) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
