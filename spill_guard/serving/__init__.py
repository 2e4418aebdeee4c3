"""The guarded OpenAI-compatible server (extra ``serve``: FastAPI + uvicorn + prometheus-client).

``create_app(guard_or_config)`` builds the ASGI app: the same value runs under uvicorn
(``spill-guard serve``), in tests, and under Ray Serve (``serve.ingress(app)``). Nothing here
imports FastAPI until :func:`create_app` is called, so ``import spill_guard.serving`` stays light.
"""

from __future__ import annotations

from typing import Any

from spill_guard.serving.config import GuardConfig, ServerSettings


def create_app(guard_or_config: Any, settings: ServerSettings | None = None, **kwargs: Any) -> Any:
    """See :func:`spill_guard.serving.app.create_app`."""
    from spill_guard.serving.app import create_app as _create_app

    return _create_app(guard_or_config, settings, **kwargs)


__all__ = ["GuardConfig", "ServerSettings", "create_app"]
