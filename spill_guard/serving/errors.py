"""Every error a client sees, in OpenAI's format: ``{"error": {"message", "type", "param", "code"}}``.

FastAPI's own 422 validation shape and Starlette's plain-text 404/405 are replaced, library
errors about the input (:class:`~spill_guard.errors.SpillGuardError` that are ``ValueError`` s)
become 400s that keep their message (it says what to fix), and anything else becomes a generic 500 whose traceback is
logged on the server, never sent.
"""

from __future__ import annotations

import logging
from typing import Any

from spill_guard.errors import SpillGuardError

log = logging.getLogger("spill_guard.serving")

#: OpenAI's error ``type`` for each status family.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    503: "service_unavailable",
    500: "server_error",
}


class OpenAIError(Exception):
    """An error response: HTTP ``status`` plus OpenAI's error fields (and optional extras)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code, **self.extra}
        }


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One readable sentence for pydantic's errors, and the first offending parameter."""
    parts, first = [], None
    for err in errors[:5]:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        where = ".".join(loc) or "body"
        first = first or (loc[0] if loc else None)
        if err.get("type") == "json_invalid":
            return (
                "the request body is not valid JSON ("
                + str(err.get("ctx", {}).get("error", "parse error"))
                + "); send a JSON object with Content-Type: application/json."
            ), None
        if err.get("type") == "missing":
            parts.append(f"'{where}' is required")
            continue
        got = err.get("input")
        shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
        parts.append(f"'{where}': {err.get('msg', 'invalid value')} (got {shown[:80]})")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more + ". Fix these fields and retry.", first


def install_error_handlers(app: Any, on_error: Any = None) -> None:
    """Register the handlers on a FastAPI ``app``; ``on_error(code)`` counts each error response."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def respond(error: OpenAIError) -> JSONResponse:
        if on_error is not None:
            on_error(error.code or error.type)
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(OpenAIError)
    async def _openai(request: Any, exc: OpenAIError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Any, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(list(exc.errors()))
        code = "invalid_json" if message.startswith("the request body is not valid JSON") else "invalid_request"
        return respond(OpenAIError(400, message, code=code, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Any, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = (
                f"no route {request.method} {request.url.path}; "
                "see GET /v1/models, POST /v1/chat/completions, POST /v1/completions."
            )
            return respond(OpenAIError(404, message, code="not_found"))
        if exc.status_code == 405:
            return respond(
                OpenAIError(
                    405, f"method {request.method} is not allowed on {request.url.path}.", code="method_not_allowed"
                )
            )
        return respond(OpenAIError(exc.status_code, str(exc.detail), code=f"http_{exc.status_code}"))

    @app.exception_handler(SpillGuardError)
    async def _library(request: Any, exc: SpillGuardError) -> JSONResponse:
        if isinstance(exc, ValueError):  # bad input or parameter: the message says what to fix
            return respond(OpenAIError(400, str(exc), code=type(exc).__name__))
        return await _unexpected(request, exc)  # e.g. the review log failed: the server's problem, not the client's

    @app.exception_handler(Exception)
    async def _unexpected(request: Any, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(
            OpenAIError(500, "internal server error; the server log has the details.", code="internal_error")
        )
