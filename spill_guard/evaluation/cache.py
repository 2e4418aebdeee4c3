"""Append-only JSONL caches that let an interrupted benchmark resume where it stopped.

The first line records the settings the entries depend on; opening a cache with other
settings is an error (a stale cache would silently mix two experiments). Each entry is
flushed and fsynced as soon as it is written, so a killed run loses at most the entry it
was writing, and a torn last line is ignored on the next open.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from spill_guard.errors import InvalidInputError


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
        with self.path.open("r", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        try:
            stored = json.loads(lines[0])["header"]
        except (json.JSONDecodeError, KeyError, IndexError):
            raise InvalidInputError(f"{self.path} is not a spill_guard cache; choose another --out folder.") from None
        if stored != self.header:
            changed = sorted(k for k in set(stored) | set(self.header) if stored.get(k) != self.header.get(k))
            raise InvalidInputError(
                f"{self.path} was made with other settings ({', '.join(changed)} differ: cached "
                f"{ {k: stored.get(k) for k in changed} }, now { {k: self.header.get(k) for k in changed} }); "
                "use a new --out folder or delete the cache to start over."
            )
        if lines[-1]:  # no trailing newline: end the torn line so appends start clean
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write("\n")
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a killed run: that entry is recomputed
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
