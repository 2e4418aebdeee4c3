"""OpenTelemetry ``gen_ai.evaluation.result`` events, one per guard verdict (extra ``otel``).

The GenAI semantic conventions (development status) define the ``gen_ai.evaluation.result``
event: ``gen_ai.evaluation.name`` (required), ``gen_ai.evaluation.score.value``,
``gen_ai.evaluation.score.label``, ``gen_ai.evaluation.explanation``, parented to the span
of the GenAI operation being evaluated. Semconv events are *log-based* (emitted with the
Logs API and an event name, correlated to the span through the context); OpenTelemetry is
deprecating the span-event API in their favour (OTEP 4430), but many tracing-only setups
show nothing but span events. So the destination is chosen per call:

- ``"auto"`` (default): a log-based event when a LoggerProvider would record it
  (``Logger.enabled``), else a span event on the current span if it is recording;
- ``"log"``, ``"span"``, ``"both"``: that destination (or both) whenever it records;
- ``"off"``: nothing.

Set it with :func:`configure` or the ``SPILL_GUARD_OTEL_EVENTS`` environment variable.
Without ``opentelemetry-api`` installed every function here is a no-op; with the API but no
SDK, the API's own no-op providers make it one too (checked before any attribute is built).
Nothing here ever raises into the caller: a failing exporter costs the event, not the answer.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from spill_guard._version import __version__
from spill_guard.errors import InvalidParameterError

EVENT_NAME = "gen_ai.evaluation.result"
EVALUATION_NAME = "hallucination"
EVENT_MODES = ("auto", "log", "span", "both", "off")
ENV_VAR = "SPILL_GUARD_OTEL_EVENTS"
INSTALL_HINT = "pip install 'spill-guard[otel]'"

_log = logging.getLogger(__name__)
_settings: dict[str, Any] = {"mode": None, "logger_provider": None, "logger": None}
_api_cache: list[Any] = []  # [module tuple or None], filled on first use


def _api() -> tuple[Any, Any, Any] | None:
    """``(trace, _logs, SeverityNumber)`` from opentelemetry-api, or None when it is not installed."""
    if not _api_cache:
        try:
            from opentelemetry import _logs, trace
            from opentelemetry._logs import SeverityNumber

            _api_cache.append((trace, _logs, SeverityNumber))
        except ImportError:
            _api_cache.append(None)
    return _api_cache[0]


def available() -> bool:
    """True when opentelemetry-api is importable (``pip install 'spill-guard[otel]'``)."""
    return _api() is not None


def configure(*, events: str | None = None, logger_provider: Any = None) -> None:
    """Choose where evaluation events go, and (optionally) the LoggerProvider for log-based ones.

    ``events`` is one of ``auto``, ``log``, ``span``, ``both``, ``off`` (None: keep the current
    setting, initially ``$SPILL_GUARD_OTEL_EVENTS`` or ``auto``). ``logger_provider``: an SDK
    LoggerProvider to use instead of the global one (e.g. in tests).
    """
    if events is not None:
        if events not in EVENT_MODES:
            raise InvalidParameterError(f"events must be one of {list(EVENT_MODES)}, got {events!r}.")
        _settings["mode"] = events
    if logger_provider is not None:
        _settings["logger_provider"] = logger_provider
        _settings["logger"] = None


def reset() -> None:
    """Back to the defaults: mode from the environment, the global LoggerProvider."""
    _settings.update(mode=None, logger_provider=None, logger=None)


def event_mode() -> str:
    """The destination setting in force (see the module docstring)."""
    mode = _settings["mode"]
    if mode is None:
        mode = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        if mode not in EVENT_MODES:
            _log.warning("%s=%r is not one of %s; using 'auto'.", ENV_VAR, mode, list(EVENT_MODES))
            mode = "auto"
        _settings["mode"] = mode
    return mode


def evaluation_attributes(verdict: Any, *, response_id: str | None = None) -> dict[str, Any]:
    """The event's attributes for a :class:`~spill_guard.guard.verdict.Verdict`.

    Semconv: name ``hallucination``; score = the risk score (higher = riskier; left out when
    the answer could not be scored); label = the action (``passed``, ``flagged``,
    ``abstained``, ``raised``); explanation = the reason. Then ``spill_guard.*`` details.
    """
    attrs: dict[str, Any] = {
        "gen_ai.evaluation.name": EVALUATION_NAME,
        "gen_ai.evaluation.score.label": getattr(verdict.action, "value", str(verdict.action)),
        "gen_ai.evaluation.explanation": verdict.reason,
    }
    if verdict.score is not None and math.isfinite(verdict.score):
        attrs["gen_ai.evaluation.score.value"] = float(verdict.score)
    if response_id:
        attrs["gen_ai.response.id"] = str(response_id)
    attrs.update(
        {
            "spill_guard.flagged": bool(verdict.flagged),
            "spill_guard.threshold": float(verdict.threshold),
            "spill_guard.spec": verdict.spec,
            "spill_guard.locator": verdict.locator,
            "spill_guard.model": verdict.model,
            "spill_guard.attempts": max(len(verdict.attempts), 1),
            "spill_guard.early_stopped": bool(verdict.early_stopped),
            "spill_guard.answer_tokens": len(verdict.tokens),
        }
    )
    if verdict.record_id:
        attrs["spill_guard.record_id"] = verdict.record_id
    return attrs


def emit_evaluation(verdict: Any, *, span: Any = None, response_id: str | None = None) -> tuple[str, ...]:
    """Emit the ``gen_ai.evaluation.result`` event of ``verdict``; returns where it went.

    ``span``: the span of the evaluated LLM call (default: the current span). Returns ``()``
    when nothing was emitted (no opentelemetry, mode ``off``, nothing recording), else
    ``("log",)``, ``("span",)`` or ``("log", "span")``.
    """
    api = _api()
    if api is None:
        return ()
    try:
        return _emit(api, verdict, span, response_id)
    except Exception:  # observability must never break an answer
        _log.warning("could not emit the %s event", EVENT_NAME, exc_info=True)
        return ()


def _emit(api: tuple[Any, Any, Any], verdict: Any, span: Any, response_id: str | None) -> tuple[str, ...]:
    trace, logs, severity = api
    mode = event_mode()
    if mode == "off":
        return ()
    target = span if span is not None else trace.get_current_span()
    context = trace.set_span_in_context(target) if span is not None else None
    to_log = mode in ("log", "both", "auto") and _logger_enabled(logs, context)
    to_span = target.is_recording() and (mode in ("span", "both") or (mode == "auto" and not to_log))
    if not (to_log or to_span):
        return ()
    attrs = evaluation_attributes(verdict, response_id=response_id)
    done: list[str] = []
    if to_log:
        level = severity.WARN if verdict.flagged else severity.INFO
        _logger(logs).emit(event_name=EVENT_NAME, attributes=attrs, context=context, severity_number=level)
        done.append("log")
    if to_span:
        target.add_event(EVENT_NAME, attributes=attrs)
        done.append("span")
    return tuple(done)


def _logger(logs: Any) -> Any:
    logger = _settings["logger"]
    if logger is None:
        provider = _settings["logger_provider"]
        logger = (
            provider.get_logger("spill_guard", __version__)
            if provider is not None
            else logs.get_logger("spill_guard", __version__)
        )
        _settings["logger"] = logger
    return logger


def _logger_enabled(logs: Any, context: Any) -> bool:
    """Whether a log-based event would be recorded (``Logger.enabled``, API >= 1.35)."""
    enabled = getattr(_logger(logs), "enabled", None)
    return bool(enabled(context=context, event_name=EVENT_NAME)) if enabled is not None else False
