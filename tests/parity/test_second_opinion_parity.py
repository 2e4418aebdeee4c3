"""The second opinion decides alike behind every door that generates through a guard: the library, the server
over loopback (its samples go through the batcher), LangChain's guarded runnable over SpillChatModel and
LlamaIndex's guarded chat engine, on the embedded model.
Each cell compares the door with the library (action, risk, answers, attempts and the review record, which
carries the second opinion: its samples, their answers and agreement) under Flag and Retry(Resample)."""

from __future__ import annotations

import pytest
from doors import DoorKit, parity_failure
from test_door_parity import MAX_NEW, QUESTIONS, THRESHOLD

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]

DOORS = ("server", "langchain", "llama_index")


class OpinionKit(DoorKit):
    """The doors' guard, with a second opinion on every first answer (a band over all risks)."""

    @staticmethod
    def opinion():
        from spill_guard import Cascade, Consistency

        return Consistency(samples=2, temperature=1.0, cascade=Cascade(-100.0, 100.0, 0.5))

    def guard(self, policy, log_path):
        from spill_guard import SpillGuard

        return SpillGuard(self.model, threshold=self.threshold, policy=policy, log=log_path,
                          max_new_tokens=self.max_new_tokens, second_opinion=self.opinion())

    def chat_model_rule(self):
        return {"threshold": self.threshold, "second_opinion": self.opinion()}


def make_policy(name):
    from spill_guard import Flag, Resample, Retry

    return {"flag": Flag, "retry": lambda: Retry(attempts=2, strategy=Resample(temperature=1.0, top_p=1.0),
                                                 fallback=Flag())}[name]()


@pytest.fixture(scope="module")
def results(parity_model, torch_single_thread, tmp_path_factory):
    kit = OpinionKit(parity_model, threshold=THRESHOLD, max_new_tokens=MAX_NEW)
    cache = {}

    def get(door, policy):
        if (door, policy) not in cache:
            log = tmp_path_factory.mktemp(f"{door}-{policy}") / "review.jsonl"
            cache[door, policy] = kit.run(door, make_policy(policy), QUESTIONS, str(log))
        return cache[door, policy]

    yield get
    kit.close()


def test_every_first_answer_got_its_second_opinion(results):
    for r in results("library", "flag"):
        opinion = r.record["second_opinion"]
        assert opinion is not None and opinion["samples"] == 2 and len(opinion["answers"]) == 2


@pytest.mark.parametrize("policy", ["flag", "retry"])
@pytest.mark.parametrize("door", DOORS)
def test_second_opinion_decides_alike_behind_every_door(results, door, policy):
    why = parity_failure(results("library", policy), results(door, policy), policy=policy)
    assert why is None, why
