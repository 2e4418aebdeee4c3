"""Door parity on vLLM: the library door and the server door decide the same, as on transformers.

The questions, threshold, generation budget and four policies are those of
tests/parity/test_door_parity.py, and so is the comparison (tests/parity/doors.py): the first
prompt ids, the action, the risk score (within 1e-4), the answer shown, the original answer,
every attempt (strategy, answer, score, prompt ids) and the review record.

- library: ``SpillGuard`` on ``SpillModel.load(backend="vllm", instruction=None)`` (offline ``vllm.LLM``);
- server: ``create_app(SpillGuard(AsyncSpillModel.load(backend="vllm", instruction=None).synchronous()))``
  on 127.0.0.1, driven by the openai SDK (DoorKit's ``server_target``).

One vLLM engine is alive at a time: the library door runs every policy on one engine, which is
closed before the server door starts. ``AsyncLLM`` binds its output handler to the first event
loop it runs on, and each server run (one per policy) has its own loop, so each policy's server
gets its own async engine, closed when that server has stopped.

Run in a pytest process of its own (the Makefile does): closing an in-process vLLM engine tears
down vLLM's process-wide parallel state, so a session-scoped engine of the other files
(``vllm_model``) would fail after this file ("pipeline model parallel group is not initialized").
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from vllm_support import ENGINE_OPTIONS, requires_vllm

pytestmark = [requires_vllm, pytest.mark.model, pytest.mark.timeout(1500)]
pytest.importorskip("fastapi", reason="the server door needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("openai", reason="the server door drives the server with the openai SDK: pip install openai")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))  # the shared door adapters and settings

from doors import REFERENCE, DoorKit, first_prompt_diff, parity_failure  # noqa: E402
from test_door_parity import MARGIN, MAX_NEW, POLICIES, QUESTIONS, THRESHOLD, make_policy  # noqa: E402
from test_second_opinion_parity import OpinionKit  # noqa: E402

#: A second opinion on every first answer (tests/parity/test_second_opinion_parity.py), under Retry(Resample):
#: the samples go through the batcher on the server and are taken as the retry's candidates.
OPINION = "second_opinion+retry_resample"

# The transformers test's THRESHOLD (-0.5) holds here. Measured with the vLLM library door (greedy,
# max_new_tokens 24, CPU, ENGINE_OPTIONS), spilled_energy:mean risk; the first answers equal transformers':
#   France   -1.0117  'The capital of France is Paris.'             -> passes
#   Italy    -0.2986  'Il Coriobella, Italy.'                         -> flagged
#   Zubrowka +0.2536  'The capital of Zubrowka is Zubrowka-Kużbak.'   -> flagged
# Retries: reprompt as on transformers (Italy -1.4611 'The capital of Italy is Rome.' -> passed; Zubrowka -0.3582
# -> abstained). Resample draws with vLLM's sampler, so its answers are not transformers': Italy +0.6390 'I'm glad
# you're happy with my answer. ...' -> abstained; Zubrowka -0.4789 'The capital of Zubrowka is Bory.' -> abstained.

SERVER = "server"


@pytest.fixture(scope="module")
def library_results(tmp_path_factory):
    """The library door's results per policy, all on one offline engine, closed before any server starts."""
    from spill_guard import SpillModel
    from spill_guard.cli.common import quiet_transformers

    quiet_transformers()
    model = SpillModel.load(backend="vllm", instruction=None, engine_options=ENGINE_OPTIONS)
    try:
        kit = DoorKit(model, threshold=THRESHOLD, max_new_tokens=MAX_NEW)
        results = {
            policy: kit.run(
                REFERENCE,
                make_policy(policy),
                QUESTIONS,
                str(tmp_path_factory.mktemp(f"library-{policy}") / "review.jsonl"),
            )
            for policy in POLICIES
        }
        results[OPINION] = OpinionKit(model, threshold=THRESHOLD, max_new_tokens=MAX_NEW).run(
            REFERENCE, make_policy("retry_resample"), QUESTIONS, str(tmp_path_factory.mktemp("library-so") / "r.jsonl")
        )
        return results
    finally:
        model.close()


def serve(policy: str, log_path: str):
    """The server door's results under ``policy`` (``OPINION``: with a second opinion, under Retry(Resample)),
    on an async engine of its own (closed after the server)."""
    from spill_guard import SpillGuard
    from spill_guard.spill_model import AsyncSpillModel

    async_model = AsyncSpillModel.load(backend="vllm", instruction=None, engine_options=ENGINE_OPTIONS)
    try:
        facade = async_model.synchronous()

        opinion = OpinionKit.opinion() if policy == OPINION else None

        def target(server_policy, server_log):
            return SpillGuard(facade, threshold=THRESHOLD, policy=server_policy, log=server_log, max_new_tokens=MAX_NEW,
                              second_opinion=opinion)

        kit = DoorKit(facade, threshold=THRESHOLD, max_new_tokens=MAX_NEW, server_target=target)
        return kit.run(SERVER, make_policy("retry_resample" if policy == OPINION else policy), QUESTIONS, log_path)
    finally:
        async_model.close()


@pytest.fixture(scope="module")
def server_results(library_results, tmp_path_factory):
    """The server door's results per policy (after the library door: one engine at a time)."""
    return {
        policy: serve(policy, str(tmp_path_factory.mktemp(f"server-{policy}") / "review.jsonl"))
        for policy in (*POLICIES, OPINION)
    }


def test_the_threshold_passes_one_question_and_flags_another(library_results):
    reference = library_results["flag"]
    actions = {r.question: r.action for r in reference}
    assert "passed" in actions.values() and "flagged" in actions.values(), actions
    near = {r.question: r.score for r in reference if r.score is None or abs(r.score - THRESHOLD) < MARGIN}
    assert not near, f"risk within {MARGIN} of the threshold {THRESHOLD} (re-measure and move it): {near}"


def test_the_server_feeds_the_model_the_same_first_prompt(library_results, server_results):
    for ref, got in zip(library_results["flag"], server_results["flag"]):
        why = first_prompt_diff(ref, got)
        assert why is None, f"{SERVER} on {ref.question!r}: {why}"


@pytest.mark.parametrize("policy", (*POLICIES, OPINION))
def test_the_server_decides_like_the_library(library_results, server_results, policy):
    got = server_results[policy]
    assert [r.question for r in got] == QUESTIONS
    why = parity_failure(library_results[policy], got, policy=policy)
    assert why is None, why
