"""The policy loop shared by the guarded query and chat engines.

An engine answers once (inside a :func:`~spill_guard_llama_index.generation.collect` scope);
the last generation the SpillLLM made is the answer the engine returned. It is re-assessed
against the *user's* query (the LLM saw the whole RAG prompt), the guard's policy decides,
and a retry re-asks the model the very same conversation — retrieved context included —
without running retrieval again. The verdict goes to the guard's review log.

When the generation was scored by an instrumented ``HuggingFaceLLM`` (see
:mod:`~spill_guard_llama_index.huggingface_llm`), it is judged as it was scored, and a retry
re-asks that same LLM the attempt's conversation (its scorer's
:meth:`~spill_guard_llama_index.huggingface_llm.HuggingFaceLLMScorer.reask`: ``chat``, or
``complete`` for a completion call) while the core's drop-in makes its torch model sample with
the attempt's params; the judge records every attempt and the prompt ids fed, as for every
door. Only a conversation the core cannot represent (other roles, non-text content) cannot be
re-asked: ``Retry`` then falls back. When no generation was collected at all (another LLM), the
engine's answer is scored with one teacher-forced pass of the guard's model over (query,
answer, retrieved context), and ``Retry`` falls back too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from spill_guard import SpillGuard
from spill_guard.guard.judge import Generated
from spill_guard.guard.verdict import HallucinationDetected, Verdict
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import Prompt
from spill_guard.policy.base import Action, Policy
from spill_guard_llama_index.generation import Generation
from spill_guard_llama_index.huggingface_llm import HuggingFaceLLMScorer, scorer_of
from spill_guard_llama_index.llm import SpillLLM

#: Metadata key under which engines put the JSON verdict.
METADATA_KEY = "spill_guard"


def nodes_context(source_nodes: Sequence[Any]) -> str | None:
    """The retrieved passages as one text (what the answer was grounded on), or None."""
    texts = [n.node.get_content() for n in source_nodes or []]
    return "\n\n".join(t for t in texts if t) or None


def enforce(
    llm: Any,
    guard: SpillGuard,
    policy: Policy,
    *,
    query: str,
    answer: str,
    generations: Sequence[Generation],
    source_nodes: Sequence[Any],
    tags: Sequence[str] = ("llama_index",),
) -> Verdict:
    """Decide on an engine's answer; log the verdict; raise under ``Raise()``."""
    context = nodes_context(source_nodes)
    judge = guard.judge
    if generations and isinstance(llm, SpillLLM):
        last = generations[-1]
        # The conversation the LLM answered (retrieved context included), judged against the user's query.
        prompt = dataclasses.replace(Prompt.for_chat(llm.spill_model.tokenizer, list(last.messages)), question=query)

        def generate(next_prompt: Prompt, params: GenerationParams) -> Generated:
            return Generated(llm.generate_params(next_prompt.messages, params).scored)

        def generate_rows(next_prompt: Prompt, params: Sequence[GenerationParams]) -> list[Generated]:
            return [Generated(g.scored) for g in llm.generate_rows_params(next_prompt.messages, params)]

        verdict = judge.decide(
            Generated(last.scored),
            prompt=prompt,
            params=last.params,
            policy=policy,
            generate=generate,
            generate_rows=generate_rows if llm.rows_in_one_call else None,
            context=context,
            strategy=last.strategy,
        )
    elif generations:  # scored where it was made: an instrumented HuggingFaceLLM, re-asked by its scorer
        last = generations[-1]
        scorer = llm if isinstance(llm, HuggingFaceLLMScorer) else scorer_of(llm)
        if scorer is not None and last.messages:
            tokenizer = scorer.guard.model.tokenizer
            asked = (
                Prompt.for_chat(tokenizer, list(last.messages))
                if last.kind == "chat"
                else Prompt.for_text(tokenizer, last.messages[-1]["content"])
            )
            prompt = dataclasses.replace(asked, question=query)

            def reask(next_prompt: Prompt, params: GenerationParams) -> Generated:
                return scorer.reask(last, next_prompt, params)

            verdict = judge.decide(
                Generated(last.scored),
                prompt=prompt,
                params=last.params,
                policy=policy,
                generate=reask,
                context=context,
                strategy=last.strategy,
            )
        else:  # a conversation the core cannot represent: judged as scored, Retry falls back
            verdict = judge.decide(
                Generated(last.scored), question=query, policy=policy, context=context, strategy=last.strategy
            )
    else:  # not our LLM: judge the text it produced, teacher-forced, grounded on the same passages
        scored = guard.model.score_answer(query, answer, context=context)
        verdict = judge.decide(Generated(scored), question=query, policy=policy, context=context)
    guard.log(verdict, tags=tags, metadata={"integration": "llama_index", "generations": len(generations)})
    if verdict.action is Action.RAISED:
        raise HallucinationDetected(verdict)
    return verdict


def with_report(metadata: dict[str, Any] | None, verdict: Verdict) -> dict[str, Any]:
    """The engine response's metadata plus the verdict under ``"spill_guard"``."""
    return {**(metadata or {}), METADATA_KEY: verdict.model_dump(mode="json")}
