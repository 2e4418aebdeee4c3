"""Import checks for the optional frameworks, with errors that say what to install."""

from __future__ import annotations

import importlib

INSTALL_HINT = (
    "pip install spill-guard-langchain  (or, from a spill_guard checkout: pip install -e integrations/langchain)"
)


def require_langchain_core() -> None:
    """Import ``langchain_core`` or raise an ImportError that names the package to install."""
    try:
        importlib.import_module("langchain_core")
    except ImportError as exc:
        raise ImportError(
            f"spill_guard_langchain needs the 'langchain-core' package, which could not be imported ({exc}). "
            f"Install it with: {INSTALL_HINT}"
        ) from exc


def require_langchain_agents() -> None:
    """Import ``langchain.agents.middleware`` (LangChain v1) or explain how to get it."""
    try:
        importlib.import_module("langchain.agents.middleware")
    except ImportError as exc:
        raise ImportError(
            "SpillGuardMiddleware needs LangChain v1 ('langchain>=1.0', which provides "
            f"langchain.agents.middleware); it could not be imported ({exc}). Install it with: "
            "pip install 'spill-guard-langchain[agents]'  (or pip install -e 'integrations/langchain[agents]')"
        ) from exc
