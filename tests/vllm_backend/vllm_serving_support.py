"""Helpers of the vLLM server tests: the server tests' helpers (tests/serving/serving_support.py)
plus what only the vLLM backend needs (reference verdicts from a transformers teacher-forced pass,
the capture store's counts read on the server's event loop)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from serving_support import (  # noqa: E402,F401
    API_KEY, MODEL, ask, metric_value, mixed_load, ray_serving, running, wait_for_replicas)

from vllm_support import ENGINE_OPTIONS  # noqa: E402


def vllm_config(**kwargs: Any) -> Any:
    """A GuardConfig serving the embedded model on vLLM with the tests' engine settings."""
    from spill_guard.serving import GuardConfig

    return GuardConfig(backend="vllm", engine_options=ENGINE_OPTIONS, **kwargs)


def reference_verdict(reference_model: Any, question: str, prompt_ids: list[int], answer_ids: list[int]) -> Any:
    """``(ScoredAnswer, risk)`` of the transformers guard on the same prompt and answer tokens (teacher-forced)."""
    from spill_guard import SpillGuard

    [scored] = reference_model.score_ids([prompt_ids], [answer_ids])
    return scored, SpillGuard(reference_model).assess(scored, question).risk


def chat_ids(tokenizer: Any, question: str) -> list[int]:
    from spill_guard.models.prompting import chat_prompt_ids

    return chat_prompt_ids(tokenizer, [{"role": "user", "content": question}])


def store_stats(server: Any) -> dict[str, int]:
    """The vLLM capture store's counts, asked on the server's event loop (where its engine runs)."""
    engine = server.state.engine
    return asyncio.run_coroutine_threadsafe(engine.generator.backend.store_stats(), engine.loop).result(60)
