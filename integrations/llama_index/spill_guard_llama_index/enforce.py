"""The policy loop shared by the guarded query and chat engines.

An engine answers once (inside a :func:`~spill_guard_llama_index.generation.collect` scope);
the last generation the SpillLLM made is the answer the engine returned. It is re-assessed
against the *user's* query (the LLM saw the whole RAG prompt), the guard's policy decides,
and a retry re-asks the model the very same conversation — retrieved context included —
without running retrieval again. The verdict goes to the guard's review log.

When the generation was scored by an instrumented ``HuggingFaceLLM`` (see
:mod:`~spill_guard_llama_index.huggingface_llm`), it is judged as it was scored; that LLM
cannot be asked for a different answer, so ``Retry`` falls back. When no generation was
collected at all (another LLM), the engine's answer is scored with one teacher-forced pass
of the guard's model over (query, answer, retrieved context), and ``Retry`` falls back too.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

from spill_guard import SpillGuard
from spill_guard.guard.verdict import HallucinationDetected, Verdict
from spill_guard.policy.base import Action, Candidate, Policy, RetryStrategy, apply_policy
from spill_guard_llama_index.generation import Generation
from spill_guard_llama_index.llm import SpillLLM

#: Metadata key under which engines put the JSON verdict.
METADATA_KEY = "spill_guard"
_SEEDS = itertools.count(1)  # distinct, repeatable-per-process seeds for resampled answers


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
    if generations and isinstance(llm, SpillLLM):
        last = generations[-1]
        first = guard.assess(last.scored, query, strategy=last.strategy)

        def regenerate(strategy: RetryStrategy, attempt: int) -> Candidate:
            fresh = llm.regenerate(last, strategy, seed=next(_SEEDS))
            return guard.assess(fresh.scored, query, strategy=strategy.name)

        decision = apply_policy(policy, first, regenerate)
    elif generations:  # scored where it was made (an instrumented HuggingFaceLLM); it cannot be re-asked
        last = generations[-1]
        decision = apply_policy(policy, guard.assess(last.scored, query, strategy=last.strategy))
    else:  # not our LLM: judge the text it produced, teacher-forced, grounded on the same passages
        scored = guard.model.score_answer(query, answer, context=context)
        decision = apply_policy(policy, guard.assess(scored, query))
    verdict = guard.verdict_from(decision, question=query, context=context)
    guard.log(verdict, tags=tags, metadata={"integration": "llama_index", "generations": len(generations)})
    if verdict.action is Action.RAISED:
        raise HallucinationDetected(verdict)
    return verdict


def with_report(metadata: dict[str, Any] | None, verdict: Verdict) -> dict[str, Any]:
    """The engine response's metadata plus the verdict under ``"spill_guard"``."""
    return {**(metadata or {}), METADATA_KEY: verdict.model_dump(mode="json")}
