"""Constants shared by the LlamaIndex tests (a uniquely named module: ``conftest`` is ambiguous
when the whole suite runs, since tests/ has its own)."""

from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "examples" / "data" / "acme_docs"
ALWAYS = -1e9  # every answer's risk is above this: always flagged
NEVER = 1e9  # never flagged
MAX_NEW = 12
