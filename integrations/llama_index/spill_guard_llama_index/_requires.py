"""Fail early, and helpfully, when LlamaIndex is not installed.

The integration is a separate distribution so the core never depends on LlamaIndex; a user
who installed only ``spill-guard`` and imports this package gets an ImportError that says
exactly what to install instead of a bare ``No module named 'llama_index'``.
"""

from __future__ import annotations

INSTALL_HINT = 'pip install spill-guard-llama-index  (or: pip install "llama-index-core>=0.12,<0.15")'


def require_llama_index() -> None:
    """Raise ImportError naming the package to install if ``llama_index.core`` is missing."""
    try:
        import llama_index.core  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"spill_guard_llama_index needs LlamaIndex, which is not importable here ({exc}). "
            f"Install it with: {INSTALL_HINT}"
        ) from exc
