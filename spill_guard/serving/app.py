"""``create_app(guard_or_config)``: the guarded OpenAI-compatible ASGI app, as a value.

The same app runs under uvicorn (``spill-guard serve``), in tests, and inside Ray Serve
(``serve.ingress(app)``). Given a :class:`GuardConfig`, the model loads in the background
when the app starts (or when :meth:`ServerState.load` is called, e.g. by a Ray deployment's
constructor), and ``GET /readyz`` says 503 until it is loaded (a failed load is reported to
``on_load_error``: ``spill-guard serve`` then stops with the error); given a ready
:class:`~spill_guard.SpillGuard` (or a bare :class:`~spill_guard.SpillModel`, scoring off),
the app is ready at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from spill_guard.errors import SpillGuardError
from spill_guard.observability.metrics import GuardMetrics
from spill_guard.serving.batching import Batcher
from spill_guard.serving.config import GuardConfig, ServerSettings, check_watch, loaded_parts
from spill_guard.serving.dispatch import Dispatcher
from spill_guard.serving.engine import Engine
from spill_guard.serving.errors import OpenAIError, install_error_handlers

log = logging.getLogger("spill_guard.serving")

#: Routes with their own metrics label; anything else is counted as "other".
KNOWN_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/healthz", "/readyz", "/metrics")


def require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise SpillGuardError(
            f"the server needs FastAPI, uvicorn and prometheus-client ({exc.name} is missing): "
            "pip install 'spill-guard[serve]'"
        ) from exc


class ServerState:
    """What one app holds: settings, metrics, engine, batcher; reachable as ``app.state.server``."""

    def __init__(self, source: Any, settings: ServerSettings):
        self.settings = settings
        self.metrics = GuardMetrics()
        self.engine = Engine(settings)
        # One batcher on every backend: it groups requests itself unless the engine batches concurrent calls.
        self.batcher = Batcher(
            self.engine.run_batch,
            groups=lambda: not self.engine.batches_itself,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            on_batch=self.metrics.batch_size.observe,
        )
        self.dispatcher = Dispatcher(self.engine, self.batcher, self.metrics)
        self.config = source if isinstance(source, GuardConfig) else None
        check_watch(self.config, settings)
        self.load_error: str | None = None  # what /readyz says after a failed load
        self.load_failure: BaseException | None = None  # the exception itself
        self.started = time.time()
        if self.config is None:
            self._attach(source)

    def load(self) -> None:
        """Build the guard from the config (blocking; idempotent). Errors are kept for /readyz."""
        if self.engine.ready or self.config is None:
            return
        try:
            self._attach(self.config.build())
            log.info("model %s loaded", self.engine.model_name)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            self.load_failure = exc
            if isinstance(exc, SpillGuardError):  # a deliberate refusal: its message says it all
                log.error("loading the model failed: %s", self.load_error)
            else:
                log.exception("loading the model failed")
            raise

    def _attach(self, built: Any) -> None:
        self.engine.attach(*loaded_parts(built))
        if self.engine.guard is not None:
            self.metrics.active_rule(self.engine.guard.rule.version)

    def count_error(self, code: str) -> None:
        self.metrics.errors.labels(type=code).inc()

    def close(self) -> None:
        """Close the review log (and vLLM engine) of a guard this app built (one passed in is the caller's)."""
        if self.config is not None and self.engine.guard is not None:
            self.engine.guard.close()
            self.engine.generator.close()  # the engine under it (vLLM's) and the model's worker thread


class RequestMetrics:
    """Counts every response by route and status, and its latency until the last body byte."""

    def __init__(self, app: Any, metrics: GuardMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope.get("path") if scope.get("path") in KNOWN_ROUTES else "other"
        started = time.perf_counter()
        status = {"code": 500}

        async def tracking_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.metrics.requests.labels(route=route, status=str(status["code"])).inc()
                self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)

        await self.app(scope, receive, tracking_send)


def create_app(
    guard_or_config: Any,
    settings: ServerSettings | None = None,
    *,
    load_on_startup: bool = True,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> Any:
    """The ASGI app serving ``guard_or_config`` (a GuardConfig, SpillGuard, or SpillModel for scoring off).

    ``load_on_startup``: with a GuardConfig, start loading the model when the app starts
    (readiness turns true when done); ``False`` leaves it to :meth:`ServerState.load`.
    ``on_load_error``: called (on the event loop) with the exception when that background load
    fails, e.g. to stop the server; without it the app stays up and ``/readyz`` reports the error.
    """
    require_serve_extra()
    from fastapi import FastAPI
    from fastapi.responses import Response

    from spill_guard.serving.admin import add_admin_routes, watch_calibration
    from spill_guard.serving.routes_chat import add_chat_route
    from spill_guard.serving.routes_completions import add_completions_route
    from spill_guard.serving.security import ApiKeyMiddleware, BodySizeLimitMiddleware

    settings = settings or ServerSettings()
    state = ServerState(guard_or_config, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        state.batcher.start()
        state.engine.samples.start()
        loading = None
        if load_on_startup and not state.engine.ready and state.config is not None:
            loading = asyncio.get_running_loop().run_in_executor(None, state.load)
            loading.add_done_callback(lambda f: _loaded(f, on_load_error))
        watching = None
        if settings.watch_calibration_s is not None and state.config is not None and state.config.calibration:
            watching = asyncio.get_running_loop().create_task(
                watch_calibration(state, state.config.calibration, settings.watch_calibration_s)
            )
        try:
            yield
        finally:
            if watching is not None:
                watching.cancel()
            await state.batcher.stop()
            await state.engine.samples.stop()
            state.close()

    app = FastAPI(
        title="spill-guard", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.server = state
    install_error_handlers(app, state.count_error)

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Any:
        if state.engine.ready:
            return {"status": "ready", "model": state.engine.model_name, "scoring": state.engine.scoring}
        if state.load_error:
            raise OpenAIError(503, f"the model failed to load: {state.load_error}", code="model_load_failed")
        raise OpenAIError(503, "the model is still loading.", code="model_loading")

    @app.get("/v1/models")
    async def models() -> Any:
        state.engine.require_ready()
        return {
            "object": "list",
            "data": [
                {
                    "id": state.engine.model_name,
                    "object": "model",
                    "created": int(state.started),
                    "owned_by": "spill-guard",
                }
            ],
        }

    @app.get("/metrics")
    async def metrics() -> Any:
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    add_chat_route(app, state.engine, state.dispatcher)
    add_completions_route(app, state.engine, state.dispatcher)
    add_admin_routes(app, state)

    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes, on_error=state.count_error)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key, on_error=state.count_error)
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    return app


def _loaded(future: Any, on_load_error: Callable[[BaseException], None] | None) -> None:
    """Done-callback of the background load: retrieve its exception (kept in ``state.load_error``; asyncio
    would warn about it again) and hand it to ``on_load_error``."""
    error = None if future.cancelled() else future.exception()
    if error is not None and on_load_error is not None:
        on_load_error(error)


def _version() -> str:
    from spill_guard import __version__

    return __version__
