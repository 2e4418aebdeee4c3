"""Roll out a new decision rule to a running server, without a restart: ``/admin/rule``.

``PUT /admin/rule`` takes ``{"calibration": <the JSON of a calibration file>}`` (as written by
``spill-guard calibrate``) or ``{"threshold": <number>}`` and swaps the guard's rule through
:meth:`~spill_guard.SpillGuard.recalibrate`: the calibration is checked against the served model
exactly as ``--calibration`` is at startup, a request already being decided finishes on the rule
it started with, and every later verdict (its ``rule_version``, its review record) names the new
one. ``GET /admin/rule`` says which rule is in force; ``/metrics`` shows it as
``spill_guard_rule_info{version="..."} 1``.

With ``--watch-calibration SECONDS`` a server built from a calibration file re-reads that file
when it changes and rolls it out the same way (:func:`watch_calibration`): on Ray Serve every
replica watches the file, so one write reaches them all.

Both routes need the header ``X-Admin-Key`` equal to :attr:`ServerSettings.admin_key
<spill_guard.serving.config.ServerSettings>` (``--admin-key``); without one configured the
routes answer 403. The swap is per process: on Ray Serve each replica holds its own guard.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
from typing import Any

from fastapi import Request  # the serve extra: this module is imported by create_app only

from spill_guard.errors import SpillGuardError
from spill_guard.serving.errors import OpenAIError

ADMIN_HEADER = "x-admin-key"
log = logging.getLogger("spill_guard.serving")


def rule_object(rule: Any) -> dict[str, Any]:
    """A rule as ``/admin/rule`` shows it."""
    return {
        "version": rule.version,
        "threshold": rule.threshold,
        "spec": rule.spec.name,
        "locator": rule.locator,
        "direction": rule.direction,
        "source": rule.source,
    }


def add_admin_routes(app: Any, state: Any) -> None:
    """``GET`` and ``PUT /admin/rule`` on ``app`` (a :class:`~spill_guard.serving.app.ServerState`'s)."""

    def authorise(request: Request) -> Any:
        key = state.settings.admin_key
        if key is None:
            raise OpenAIError(
                403,
                "admin routes are off on this server; start it with --admin-key (or SPILL_GUARD_ADMIN_KEY) "
                "to roll out a new calibration at run time.",
                code="admin_disabled",
            )
        given = request.headers.get(ADMIN_HEADER, "")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), key.encode("utf-8")):
            raise OpenAIError(
                401, "missing or wrong admin key: send the header 'X-Admin-Key: <key>'.", code="invalid_admin_key"
            )
        state.engine.require_ready()
        guard = state.engine.guard
        if guard is None:
            raise OpenAIError(409, "this server runs with scoring off (--no-guard): it has no rule.", code="no_guard")
        return guard

    swapping = asyncio.Lock()  # one roll-out at a time: the metric names the rule the last one put in force

    @app.get("/admin/rule")
    async def current_rule(request: Request) -> Any:
        return {"rule": rule_object(authorise(request).rule)}

    @app.put("/admin/rule")
    async def put_rule(request: Request) -> Any:
        guard = authorise(request)
        calibration, threshold = _parse(await request.body())
        async with swapping:
            try:  # checking a calibration against the model may read its weights' fingerprint: off the event loop
                previous = await asyncio.to_thread(guard.recalibrate, calibration=calibration, threshold=threshold)
            except SpillGuardError as exc:
                raise OpenAIError(400, f"the rule was not changed: {exc}", code=type(exc).__name__) from None
            state.metrics.active_rule(guard.rule.version)
            return {"rule": rule_object(guard.rule), "previous": rule_object(previous)}


async def watch_calibration(state: Any, path: str, interval: float) -> None:
    """Re-read the calibration file at ``path`` whenever it changes (checked every ``interval`` seconds)
    and roll it out as ``PUT /admin/rule`` does. A file that cannot be used is reported in the server
    log and the rule in force stays; the next change is tried again. Runs until cancelled.

    Every replica of a Ray Serve deployment runs its own watcher on the same path, so a new file on
    a path they share reaches all of them within ``interval``.
    """
    seen = _signature(path)
    while True:
        await asyncio.sleep(interval)
        now = _signature(path)
        if now == seen or now is None:
            continue
        seen = now
        guard = state.engine.guard
        if guard is None:
            continue
        try:
            previous = await asyncio.to_thread(guard.recalibrate, calibration=path)
        except SpillGuardError as exc:
            log.error(
                "the changed calibration file %s was not rolled out; the rule stays %s: %s",
                path,
                guard.rule.version,
                exc,
            )
            continue
        state.metrics.active_rule(guard.rule.version)
        log.info("calibration file %s rolled out: rule %s replaces %s", path, guard.rule.version, previous.version)


def _signature(path: str) -> tuple[int, int, int] | None:
    """What tells a rewritten file from the one read before (a replaced file has another inode)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def _parse(body: bytes) -> tuple[Any, float | None]:
    """``(Calibration or None, threshold or None)`` from a ``PUT /admin/rule`` body."""
    from spill_guard.calibration import Calibration

    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or len(set(data) & {"calibration", "threshold"}) != 1 or len(data) != 1:
        raise OpenAIError(
            400,
            'send a JSON object with one field: {"calibration": <the calibration file\'s JSON>} or '
            '{"threshold": <number>}.',
            code="invalid_rule",
        )
    if "threshold" in data:
        value = data["threshold"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise OpenAIError(400, f"threshold must be a finite number, got {value!r}.", param="threshold")
        return None, float(value)
    try:
        return Calibration.from_json(json.dumps(data["calibration"]), where="the request's calibration"), None
    except SpillGuardError as exc:
        raise OpenAIError(400, str(exc), param="calibration", code=type(exc).__name__) from None
