"""``AsyncVllmSpillModel``: scored answers from an ``AsyncLLM`` engine, one coroutine per request.

For servers: many requests in flight at once share vLLM's continuous batching. Each call
submits its answer request, then the z_(T+1) follow-up, then fetches both keys' values;
if the call is cancelled or fails, the requests are aborted and their captured values
discarded, so the worker's store does not keep them.
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from spill_guard.backends.vllm.engine import check_engine_config, engine_kwargs, greedy_reads_max, require_vllm
from spill_guard.backends.vllm.loading import VllmLoadedModel, load_model_info, vllm_dtype
from spill_guard.backends.vllm.model import default_engine_options
from spill_guard.backends.vllm.plan import (PlannedAnswer, Sampling, answer_params, chosen_source, follow_up_params, new_key,
                                            stopped_on_stop_token)
from spill_guard.backends.vllm.reduce import Columns
from spill_guard.capture.final_step import skip_ids_for
from spill_guard.capture.step_stats import validate_betas
from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.models.prompting import DEFAULT_INSTRUCTION, prompt_ids
from spill_guard.report import ScoredAnswer, build_scored_answer


class AsyncVllmSpillModel:
    """Generate-and-score on ``vllm.v1.engine.async_llm.AsyncLLM`` (same results as :class:`VllmSpillModel`)."""

    backend = "vllm"

    def __init__(self, engine: Any, loaded: VllmLoadedModel, *, beta: float = 1.0,
                 instruction: str | None = DEFAULT_INSTRUCTION, system: str | None = None):
        self.engine = engine
        self.loaded = loaded
        self.betas = check_engine_config(engine.vllm_config)
        self.beta = float(beta)
        if self.beta not in self.betas:
            raise InvalidParameterError(f"beta {beta} is not captured by this engine (it captures {list(self.betas)}).")
        self.columns = Columns(self.betas)
        self.greedy_reads_max = greedy_reads_max(engine.vllm_config)
        self.instruction, self.system = instruction, system

    @classmethod
    def load(cls, name_or_path: str | None = None, *, dtype: str = "auto", beta: float = 1.0,
             extra_betas: Sequence[float] = (), engine_options: dict[str, Any] | None = None,
             **kwargs: Any) -> "AsyncVllmSpillModel":
        require_vllm()
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        betas = validate_betas((beta, *extra_betas))
        loaded = load_model_info(name_or_path, dtype=dtype, max_model_len=(engine_options or {}).get("max_model_len"))
        opts = default_engine_options(engine_options, loaded)
        engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_kwargs(
            loaded.source, betas=betas, dtype=vllm_dtype(loaded.dtype), **opts)))
        loaded.max_model_len = int(engine.vllm_config.model_config.max_model_len)
        return cls(engine, loaded, beta=beta, **kwargs)

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    def prompt_ids(self, question: str, *, context: str | None = None) -> list[int]:
        return prompt_ids(self.tokenizer, question, context=context, system=self.system, instruction=self.instruction)

    async def generate(self, question: str, *, context: str | None = None, **kwargs: Any) -> ScoredAnswer:
        return await self.generate_from_ids(self.prompt_ids(question, context=context), **kwargs)

    async def generate_from_ids(self, prompt: Sequence[int], *, max_new_tokens: int = 64, do_sample: bool = False,
                                seed: int | None = None, request_id: str | None = None, final_step: str = "always",
                                **kwargs: Any) -> ScoredAnswer:
        """One scored answer; ``request_id`` (default: a fresh one) is the vLLM request id to abort.

        ``final_step="auto"`` skips the z_(T+1) follow-up after a stop token without text.
        """
        from vllm.inputs import TokensPrompt

        if not prompt:
            raise InvalidInputError("the prompt has no tokens; pass a non-empty list of token ids.")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InvalidParameterError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}.")
        room = self.loaded.context_window - len(prompt) - 1
        if room < 1:
            raise InvalidInputError(f"{len(prompt)} prompt tokens leave no room in the context window of "
                                    f"{self.loaded.context_window}; shorten the prompt.")
        sampling = Sampling.from_kwargs(max_new_tokens=min(max_new_tokens, room), do_sample=do_sample, seed=seed, **kwargs)
        stops = self.loaded.stop_token_ids
        skip_after = skip_ids_for(final_step, self.tokenizer, stops)
        plan = PlannedAnswer(list(prompt), new_key(), new_key(), chosen=chosen_source(sampling, self.greedy_reads_max))
        rid = request_id or plan.key
        params = answer_params(sampling, stops, plan.key, chosen=plan.chosen)
        try:
            final = await _last(self.engine.generate(TokensPrompt(prompt_token_ids=plan.prompt), params, rid))
            plan.record_output(final.outputs[0], sampling.max_new_tokens)
            if not plan.skip_follow_up(stops, skip_after):
                follow = follow_up_params(sampling.stats, plan.follow_key, plan.key)
                await _last(self.engine.generate(TokensPrompt(prompt_token_ids=plan.follow_prompt), follow, rid + "-next"))
            fetched = (await self.engine.collective_rpc("spill_guard_fetch", args=([plan.key, plan.follow_key],)))[0]
        except BaseException:
            await asyncio.shield(self._cleanup([rid, rid + "-next"], [plan.key, plan.follow_key]))
            raise
        trace = plan.trace(fetched, self.columns, self.loaded.vocab_size, sampling.stats)
        return build_scored_answer(tokenizer=self.tokenizer, model_name=self.loaded.name, prompt_ids=plan.prompt,
                                   trace=trace, stopped_on_eos=stopped_on_stop_token(plan, stops), beta=self.beta)

    async def _cleanup(self, request_ids: list[str], keys: list[str]) -> None:
        await self.engine.abort(request_ids)
        await self.engine.collective_rpc("spill_guard_discard", args=(keys,))

    async def store_stats(self) -> dict[str, int]:
        return (await self.engine.collective_rpc("spill_guard_store_stats"))[0]

    def shutdown(self) -> None:
        self.engine.shutdown()


async def _last(stream: Any) -> Any:
    final = None
    async for final in stream:
        pass
    if final is None:
        from spill_guard.errors import CaptureError

        raise CaptureError("vLLM returned no output for the request.")
    return final
