"""The review studio (``spill-guard review serve``, extra ``review-ui``): label flagged answers in a browser.

See docs/review-studio.md. ``create_studio_app(StudioSettings(log=...))`` builds the FastAPI app;
the CLI serves it with uvicorn on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

EXTRA_HINT = "the review studio needs its extra: pip install 'spill-guard[review-ui]'"


def require_review_ui() -> None:
    """Raise a DependencyImportError naming the extra when FastAPI / Jinja2 / uvicorn / python-multipart are missing."""
    from spill_guard.errors import DependencyImportError

    missing = []
    for module in ("fastapi", "jinja2", "uvicorn", "multipart"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise DependencyImportError(f"{EXTRA_HINT} (missing: {', '.join(missing)}).")


def create_studio_app(settings: Any) -> Any:
    require_review_ui()
    from spill_guard.studio.app import create_studio_app as create

    return create(settings)
