"""Engine options as text: what ``--engine-option KEY=VALUE`` and a server config's ``engine_options`` hold.

The options are handed to a backend's loader (:func:`~spill_guard.backends.registry.load_backend`);
which ones mean anything is the backend's business (vLLM: ``vllm.LLM`` arguments).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spill_guard.errors import InvalidParameterError


def parse_engine_options(items: Any) -> dict[str, Any]:
    """``KEY=VALUE`` strings (a list, or one comma-separated string) as engine options for a loader.

    Values are read as JSON where they parse (``1024``, ``true``, ``0.5``), else kept as text;
    a mapping is taken as it is.
    """
    import json

    if isinstance(items, Mapping):
        return dict(items)
    if isinstance(items, str):
        items = [part for part in items.split(",") if part.strip()]
    options: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise InvalidParameterError(f"engine option {item!r} must be KEY=VALUE, e.g. max_model_len=2048.")
        try:
            options[key.strip()] = json.loads(text)
        except ValueError:
            options[key.strip()] = text
    return options
