"""What a calibration depends on besides the scorer: model, tokenizer and prompt, as comparable facts.

A threshold is only meaningful for the exact score distribution it was fitted on; a
different vocabulary, chat template or instruction shifts every score. These small records
let a saved calibration be checked against the model it is applied to.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class TokenizerInfo(BaseModel):
    """``name_or_path`` is informational (it is a machine-specific path for converted models);
    ``vocab_size`` and ``vocab_hash`` (over every token string and id) identify the vocabulary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name_or_path: str
    vocab_size: int
    vocab_hash: str


class PromptInfo(BaseModel):
    """How questions are framed: the instruction appended, the system message, the chat template."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction: str | None
    system: str | None
    chat_template_hash: str  # "none" for base models framed without a chat template


def tokenizer_info(tokenizer: Any) -> TokenizerInfo:
    vocab = tokenizer.get_vocab()
    return TokenizerInfo(
        name_or_path=str(getattr(tokenizer, "name_or_path", "") or ""),
        vocab_size=len(tokenizer),
        vocab_hash=short_hash(json.dumps(sorted(vocab.items()))),
    )


def prompt_info(spill_model: Any) -> PromptInfo:
    template = getattr(spill_model.tokenizer, "chat_template", None)
    return PromptInfo(
        instruction=spill_model.instruction,
        system=spill_model.system,
        chat_template_hash=short_hash(template) if isinstance(template, str) and template else "none",
    )


def fingerprint(spill_model: Any) -> dict[str, Any]:
    """``model``, ``tokenizer`` and ``prompt`` of a :class:`~spill_guard.SpillModel`, as
    keyword arguments for :meth:`Calibration.from_fit`."""
    return {
        "model": spill_model.loaded.name,
        "tokenizer": tokenizer_info(spill_model.tokenizer),
        "prompt": prompt_info(spill_model),
    }
