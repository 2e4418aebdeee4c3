"""Record a LangChain door's final verdicts through the core's one :class:`~spill_guard.guard.recording.VerdictLog`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spill_guard.guard.recording import VerdictLog


def verdict_log(log: Any, *, log_all: bool, on_log_error: str = "raise", metrics: Any = None) -> VerdictLog:
    """The :class:`VerdictLog` of a wrapper: ``log`` a path, a sink or ``None``."""
    return VerdictLog(log, log_all=log_all, on_log_error=on_log_error, metrics=metrics)


def run_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's LangChain metadata as record metadata: objects it may hold are kept as their repr."""
    return {
        str(k): v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else repr(v)
        for k, v in (metadata or {}).items()
    }
