"""Server-sent events as OpenAI streams them: ``data: {json}\\n\\n`` per chunk, then ``data: [DONE]``."""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"

#: Headers that keep proxies from buffering the stream.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(payload: Any) -> bytes:
    """One SSE event carrying ``payload`` as strict JSON."""
    return b"data: " + json.dumps(payload, ensure_ascii=False, allow_nan=False).encode() + b"\n\n"
