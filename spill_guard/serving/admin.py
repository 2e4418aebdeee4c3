"""Roll out a new decision rule to a running server, without a restart: ``/admin/rule``.

``PUT /admin/rule`` takes ``{"calibration": <the JSON of a calibration file>}`` (as written by
``spill-guard calibrate``) or ``{"threshold": <number>}`` and swaps the guard's rule through
:meth:`~spill_guard.SpillGuard.recalibrate`: the calibration is checked against the served model
exactly as ``--calibration`` is at startup, a request already being decided finishes on the rule
it started with, and every later verdict (its ``rule_version``, its review record) names the new
one. ``GET /admin/rule`` says which rule is in force; ``/metrics`` shows it as
``spill_guard_rule_info{version="..."} 1``.

Both need the header ``X-Admin-Key`` equal to :attr:`ServerSettings.admin_key
<spill_guard.serving.config.ServerSettings>` (``--admin-key``); without one configured the
routes answer 403. The swap is per process: on Ray Serve each replica holds its own guard.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
from typing import Any

from fastapi import Request  # the serve extra: this module is imported by create_app only

from spill_guard.errors import SpillGuardError
from spill_guard.serving.errors import OpenAIError

ADMIN_HEADER = "x-admin-key"


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
