"""Append-only JSONL caches that let an interrupted benchmark resume where it stopped.

The first line records the settings the entries depend on; opening a cache with other
settings is an error (a stale cache would silently mix two experiments). Entries are keyed
by :func:`content_key` of what determines them (for generations: the exact prompt token
ids), never by an item id or a file name, so another task written to the same folder can
only miss the cache, never hit another question's answer. Each entry is flushed and fsynced
as soon as it is written, so a killed run loses at most the entry it was writing, and a torn
last line is ignored on the next open.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from spill_guard.errors import InvalidInputError

#: What ``json.loads`` raises on text that is not JSON: JSONDecodeError (a ValueError), a
#: ValueError for integers beyond Python's digit limit, RecursionError for very deep nesting.
JSON_ERRORS = (ValueError, RecursionError)


def content_key(value: Any) -> str:
    """A stable hex digest of a JSON-serialisable value (canonical JSON, sorted keys)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The settings line of the cache file ``path``; :class:`InvalidInputError` if it has none."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            first = fh.readline()
    except OSError as exc:
        raise InvalidInputError(f"cannot read cache file {os.fspath(p)!r}: {exc.strerror or exc}.") from None
    return _parse_header(first, p)


def _parse_header(first: bytes, path: Path) -> dict[str, Any]:
    try:
        stored = json.loads(first.decode("utf-8"))["header"]
    except (UnicodeDecodeError, *JSON_ERRORS, KeyError, IndexError, TypeError):
        stored = None
    if not isinstance(stored, dict):
        raise InvalidInputError(
            f"{os.fspath(path)!r} is not a spill_guard cache (its first line is not a settings header); "
            "choose another --out / --cache folder, or delete the file."
        )
    return stored


class JsonlCache:
    """Maps string keys to JSON values, persisted in ``path``; ``header`` pins the settings."""

    def __init__(self, path: str | os.PathLike, header: dict[str, Any]):
        self.path = Path(path)
        self.header = header
        self._entries: dict[str, Any] = {}
        if self.path.exists():
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as fh:
                fh.write(json.dumps({"header": header}) + "\n")

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(
                f"cannot read cache file {os.fspath(self.path)!r}: {exc.strerror or exc}."
            ) from None
        lines = data.split(b"\n")
        stored = _parse_header(lines[0], self.path)
        if stored != self.header:
            changed = sorted(k for k in set(stored) | set(self.header) if stored.get(k) != self.header.get(k))
            raise InvalidInputError(
                f"{self.path} was made with other settings ({', '.join(map(str, changed))} differ: cached "
                f"{ {k: stored.get(k) for k in changed} }, now { {k: self.header.get(k) for k in changed} }); "
                "use a new --out / --cache folder or delete the cache to start over."
            )
        if lines[-1]:  # no trailing newline: end the torn line so appends start clean
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write("\n")
        for lineno, raw in enumerate(lines[1:], start=2):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, *JSON_ERRORS):
                continue  # a torn line from a killed run (no prefix of an entry is valid JSON): recomputed
            # Valid JSON of another shape cannot come from a torn write: the file was edited or
            # is not ours, so say where instead of guessing.
            if not (isinstance(entry, dict) and set(entry) == {"key", "value"} and isinstance(entry["key"], str)):
                raise InvalidInputError(
                    f'{self.path}:{lineno}: not a cache entry (expected {{"key": "...", "value": ...}}, got '
                    f"{_clip(raw)}); delete the cache file to regenerate."
                )
            self._entries[entry["key"]] = entry["value"]

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __getitem__(self, key: str) -> Any:
        return self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def put_many(self, items: dict[str, Any]) -> None:
        """Store several entries with one durable append."""
        if not items:
            return
        payload = "".join(json.dumps({"key": k, "value": v}) + "\n" for k, v in items.items())
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        self._entries.update(items)


def _clip(raw: bytes, width: int = 80) -> str:
    text = raw.decode("utf-8", errors="replace")
    return repr(text if len(text) <= width else text[: width - 3] + "...")
