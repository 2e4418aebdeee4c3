"""Model loading: the embedded default, hub ids, local folders and GGUF files."""

from spill_guard.models.device import resolve_device, resolve_dtype
from spill_guard.models.embedded import DEFAULT_MODEL, EMBEDDED
from spill_guard.models.loader import LoadedModel, load_model

__all__ = ["DEFAULT_MODEL", "EMBEDDED", "LoadedModel", "load_model", "resolve_device", "resolve_dtype"]
