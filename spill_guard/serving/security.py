"""API-key check and request-body size limit, as plain ASGI middleware (outer layers).

Both answer in OpenAI's error format before any route code runs. The key is compared in
constant time; health probes stay open so orchestrators can check liveness and readiness
without the secret.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from spill_guard.serving.errors import OpenAIError

#: Routes that answer without the API key (probes).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


async def _send_error(send: Any, error: OpenAIError, on_error: Any = None) -> None:
    if on_error is not None:
        on_error(error.code or error.type)
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if error.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """401 for every HTTP request without ``Authorization: Bearer <key>``, except :data:`OPEN_PATHS`."""

    def __init__(self, app: Any, api_key: str, on_error: Any = None):
        self.app = app
        self.expected = f"Bearer {api_key}".encode()
        self.on_error = on_error

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        message = (
            "missing API key: send the header 'Authorization: Bearer <key>' (the openai SDK sends api_key=...)."
            if not given
            else "invalid API key: check the key given to `spill-guard serve --api-key` / SPILL_GUARD_API_KEY."
        )
        await _send_error(send, OpenAIError(401, message, code="invalid_api_key"), self.on_error)


class BodySizeLimitMiddleware:
    """413 for a request body over ``max_bytes``: by Content-Length, or counted while it streams in."""

    def __init__(self, app: Any, max_bytes: int, on_error: Any = None):
        self.app = app
        self.max_bytes = max_bytes
        self.on_error = on_error

    def _error(self) -> OpenAIError:
        return OpenAIError(
            413,
            f"request body exceeds the server's limit of {self.max_bytes} bytes; "
            "send a shorter prompt (the operator sets the limit with --max-body-bytes).",
            code="request_too_large",
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:  # the HTTP server holds the client to its declared length
            if length.isdigit() and int(length) > self.max_bytes:
                return await _send_error(send, self._error(), self.on_error)
            return await self.app(scope, receive, send)
        # Chunked body of unknown length: read it here, at most max_bytes, then replay it to the app.
        body, messages = 0, []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += len(message.get("body", b""))
            if body > self.max_bytes:
                return await _send_error(send, self._error(), self.on_error)
            messages.append(message)
            if not message.get("more_body"):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
