"""Door parity on the real embedded model: the same questions through every door decide the same.

Six doors (tests/parity/doors.py: the library guard, the server over loopback with the openai SDK,
LangChain's SpillGuardedRunnable over SpillChatModel, LlamaIndex's guarded chat engine over SpillLLM,
and the two drop-ins, ChatHuggingFace and HuggingFaceLLM on the same torch model) under four
policies. Each cell compares one door with the library door: the first prompt ids, the action,
the risk score (within 1e-4), the answer shown, the original answer, every attempt (strategy,
answer, score, prompt ids) and the review record (without ids, times and the door's own
tags/metadata). A failing cell's message lists every field that differs, library value first.

A door that cannot do what a policy asks (a drop-in that cannot re-ask its model) fails its cell:
nothing here is skipped or expected to fail.
"""

from __future__ import annotations

import pytest
from doors import DOORS, REFERENCE, DoorKit, first_prompt_diff, parity_failure

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]

QUESTIONS = ["What is the capital of France?", "What is the capital of Italy?", "What is the capital of Zubrowka?"]
MAX_NEW = 24
# Fixed here, not the packaged calibration's, so the test decides which answers are flagged. Measured with the
# library door (SpillModel(loaded, instruction=None), greedy, max_new_tokens 24, CPU fp32), spilled_energy:mean risk:
#   France   -1.0117  'The capital of France is Paris.'             -> passes
#   Italy    -0.2986  'Il Coriobella, Italy.'                         -> flagged
#   Zubrowka +0.2536  'The capital of Zubrowka is Zubrowka-Kużbak.'   -> flagged
THRESHOLD = -0.5
MARGIN = 0.1  # every first answer's risk is at least this far from the threshold (checked below)
REPROMPT = "Reply with the city name only."
RESAMPLE_TEMPERATURE = 0.7
RESAMPLE_SEED = 0
# The retries, measured with the library door the same way (resample: the rewrite's seed scheme, seed 0 + 2):
#   Italy     reprompt -1.4611 'The capital of Italy is Rome.' -> passed;  resample -1.1118, the same text -> passed
#   Zubrowka  reprompt -0.3582 'The capital of Zubrowka is Zubrowka.' -> abstained (the lower-risk answer kept);
#             resample -0.4336 'The capital of Zubrowka is Zubruka.' -> abstained


def resample():
    """``Resample`` at a fixed temperature and seed: attempt k of a call without its own seed samples with
    seed ``RESAMPLE_SEED + k`` in every door (the one seed scheme of the decision-path rewrite)."""
    from spill_guard import Resample

    return Resample(temperature=RESAMPLE_TEMPERATURE, seed=RESAMPLE_SEED)


def make_policy(name):
    from spill_guard import Abstain, Flag, Reprompt, Retry

    return {
        "flag": lambda: Flag(),
        "abstain": lambda: Abstain(),
        "retry_resample": lambda: Retry(attempts=2, strategy=resample(), fallback=Abstain()),
        "retry_reprompt": lambda: Retry(attempts=2, strategy=Reprompt(REPROMPT), fallback=Abstain()),
    }[name]()


POLICIES = ("flag", "abstain", "retry_resample", "retry_reprompt")
OTHER_DOORS = [d for d in DOORS if d != REFERENCE]


@pytest.fixture(scope="module")
def kit(parity_model, torch_single_thread):  # one torch thread (tests/conftest.py): tiny matmuls
    kit = DoorKit(parity_model, threshold=THRESHOLD, max_new_tokens=MAX_NEW)
    yield kit
    kit.close()


@pytest.fixture(scope="module")
def results(kit, tmp_path_factory):
    """``results(door, policy)``: that door's results for QUESTIONS, run once per module."""
    cache = {}

    def get(door, policy):
        if (door, policy) not in cache:
            log = tmp_path_factory.mktemp(f"{door}-{policy}") / "review.jsonl"
            cache[door, policy] = kit.run(door, make_policy(policy), QUESTIONS, str(log))
        return cache[door, policy]

    return get


def test_the_threshold_passes_one_question_and_flags_another(results):
    """The reference door's first answers fall on both sides of the threshold, with margin, so every
    policy acts on some question and leaves another alone."""
    reference = results(REFERENCE, "flag")
    actions = {r.question: r.action for r in reference}
    assert "passed" in actions.values() and "flagged" in actions.values(), actions
    near = {r.question: r.score for r in reference if r.score is None or abs(r.score - THRESHOLD) < MARGIN}
    assert not near, f"risk within {MARGIN} of the threshold {THRESHOLD} (re-measure and move it): {near}"


@pytest.mark.parametrize("door", OTHER_DOORS)
def test_every_door_feeds_the_model_the_same_first_prompt(results, door):
    for ref, got in zip(results(REFERENCE, "flag"), results(door, "flag")):
        why = first_prompt_diff(ref, got)
        assert why is None, f"{door} on {ref.question!r}: {why}"


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("door", OTHER_DOORS)
def test_door_decides_like_the_library(results, door, policy):
    reference, got = results(REFERENCE, policy), results(door, policy)
    assert [r.question for r in got] == QUESTIONS
    why = parity_failure(reference, got, policy=policy)
    assert why is None, why


@pytest.mark.parametrize("instruction", [None, "default"])
def test_reprompt_appends_its_instruction_to_the_last_user_turn(parity_model, torch_single_thread, instruction):
    """The one Reprompt meaning: the retry's user turn is the first one, then one space, then the instruction.

    With the model's default instruction the first user turn is 'question Answer briefly.', so the retry
    must keep it (not replace it). Every answer is flagged here, so the retry always runs.
    """
    from spill_guard import SpillGuard, SpillModel
    from spill_guard.models.prompting import DEFAULT_INSTRUCTION, chat_prompt_ids, format_question

    model = parity_model if instruction is None else SpillModel(parity_model.loaded, instruction=DEFAULT_INSTRUCTION)
    question = QUESTIONS[0]
    guard = SpillGuard(model, threshold=-1e9, policy=make_policy("retry_reprompt"), max_new_tokens=MAX_NEW)
    verdict = guard.ask(question)
    first_turn = format_question(question, instruction=model.instruction)
    expected = [chat_prompt_ids(model.tokenizer, [{"role": "user", "content": first_turn}]),
                chat_prompt_ids(model.tokenizer, [{"role": "user", "content": f"{first_turn} {REPROMPT}"}])]
    assert [a.strategy for a in verdict.attempts] == ["greedy", "reprompt"]
    reported = [getattr(a, "prompt_ids", None) for a in verdict.attempts]
    assert reported == expected, (
        f"attempt prompt ids {reported} != expected {expected} (first user turn {first_turn!r}, retry "
        f"{first_turn + ' ' + REPROMPT!r}); None means the attempt does not report the ids it was generated from")
