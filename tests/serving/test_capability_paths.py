"""The server's one generation path on a backend with vLLM's capabilities, in the main environment.

``WholeAnswers`` is a backend of its own over the embedded model's transformers backend: it
returns whole answers and replays their steps to listeners afterwards, refuses stop hooks and
teacher forcing, samples each row on its own (a row's seed seeds that row: one call per row) and
declares ``continuous_batching`` (the server then hands each request over at once, the path vLLM's
async engine takes; its calls still run one at a time in the model's worker thread). What the
server does differently is read from those declarations, never from a backend name:

- streamed token chunks are replayed after generation, with the values the verdict pools;
- a seeded request's ``n`` choices get seeds ``seed, seed + 1, ...``, so they differ and repeat;
- requests are not grouped (each batch is one request's rows);
- a retry regenerates through the same facade from the finish thread.

Before this path existed the server refused such a model (``create_app`` required ``streams_steps``
and ``stops_early``).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from serving_support import MODEL, metric_value, running

from spill_guard.backends import Capabilities, UnsupportedCapabilityError
from spill_guard.backends.replay import replay_steps
from spill_guard.models.params import GenerationParams

pytestmark = pytest.mark.model

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


class WholeAnswers:
    """The backend protocol over a transformers backend, generating whole answers only (see the module docstring)."""

    name = "whole-answers"
    capabilities = Capabilities(per_row_sampling=True, continuous_batching=True)

    def __init__(self, inner: Any):
        self.inner = inner
        self.loaded, self.betas, self.beta = inner.loaded, inner.betas, inner.beta
        self.calls: list[int] = []

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: GenerationParams | Sequence[GenerationParams],
        *,
        listeners: Sequence[Any] = (),
        stop_hooks: Sequence[Any] = (),
        stats: str | None = "full",
        final_step: str = "always",
    ) -> list[Any]:
        if stop_hooks:
            raise UnsupportedCapabilityError("stops_early", self.name, "stop hooks")
        rows = list(params) if isinstance(params, Sequence) else [params] * len(prompts)
        self.calls.append(len(prompts))
        answers = [
            self.inner.generate([prompt], row, stats=stats, final_step=final_step)[0]
            for prompt, row in zip(prompts, rows)
        ]
        if listeners:
            replay_steps(answers, listeners, self.loaded.pad_token_id)
        return answers

    def score(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[Any]:
        raise UnsupportedCapabilityError("teacher_forcing", self.name, "scoring an answer made elsewhere")


@pytest.fixture(scope="module")
def backend(spill_model):
    return WholeAnswers(spill_model.backend)


@pytest.fixture(scope="module")
def server(backend):
    from spill_guard import SpillGuard, SpillModel
    from spill_guard.serving import ServerSettings, create_app

    guard = SpillGuard(SpillModel(backend), threshold=1.0)
    with running(create_app(guard, ServerSettings(max_batch=8, max_wait_ms=200))) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    with OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def test_streams_are_replayed_with_the_values_the_verdict_pools(client, spill_model):
    whole = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=8, extra_body={"spill_guard": {"token_scores": True}}
    )
    expected = whole.choices[0].model_extra["spill_guard"]
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    tokens = [c.choices[0].model_extra["spill_guard"]["token"] for c in chunks if c.choices[0].finish_reason is None]
    assert [t["token_id"] for t in tokens] == [t["token_id"] for t in expected["token_scores"]]
    assert [t["spilled_energy"] for t in tokens] == pytest.approx(
        [t["spilled_energy"] for t in expected["token_scores"]], abs=1e-6
    )
    # ... and they are the transformers server path's numbers on the same tokens (teacher-forced)
    from spill_guard.models.prompting import Prompt

    prompt_ids = Prompt.for_chat(spill_model.tokenizer, MESSAGES).ids
    [forced] = spill_model.score_ids([prompt_ids], [[t["token_id"] for t in tokens]])
    # a last token that is a stop token without text has no Δ (final_step="auto" skips its z_(T+1))
    known = [(t["spilled_energy"], f) for t, f in zip(tokens, forced.spilled_energy) if t["spilled_energy"] is not None]
    assert len(known) >= len(tokens) - 1
    assert [k for k, _ in known] == pytest.approx([f for _, f in known], abs=2e-4)


def test_seeded_choices_get_a_seed_each_and_repeat(client):
    kwargs = dict(model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8,
                  temperature=1.0, seed=7, n=3)
    first = [c.message.content for c in client.chat.completions.create(**kwargs).choices]
    again = [c.message.content for c in client.chat.completions.create(**kwargs).choices]
    assert first == again
    single = client.chat.completions.create(**{**kwargs, "n": 1, "seed": 8}).choices[0].message.content
    assert single == first[1]  # choice 1 of seed 7 is seed 8's answer
    assert len(set(first)) > 1, first


def test_requests_are_handed_over_one_by_one_not_grouped(server, client, backend):
    before = len(backend.calls)
    with ThreadPoolExecutor(4) as pool:  # within the 200 ms grouping window of a grouping backend
        list(pool.map(lambda _: client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4),
                      range(4)))
    assert backend.calls[before:] == [1, 1, 1, 1]
    metrics = server.state.metrics.render()[0].decode()
    assert metric_value(metrics, "spill_guard_batch_size_count") >= 4


def test_a_retry_regenerates_through_the_same_facade(server, client, backend):
    from spill_guard.policy import Abstain, Resample, Retry

    import dataclasses

    guard = server.state.engine.guard
    saved, saved_rule = guard.policy, guard.rule
    guard.policy = Retry(attempts=2, strategy=Resample(temperature=0.9, seed=3), fallback=Abstain("Not sure."))
    try:
        guard.rule = dataclasses.replace(guard.rule, threshold=-100.0)  # every answer is flagged
        before = len(backend.calls)
        reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6)
        verdict = reply.choices[0].model_extra["spill_guard"]
        assert verdict["action"] == "abstained" and [a["strategy"] for a in verdict["attempts"]] == ["greedy", "resample@0.9"]
        assert backend.calls[before:] == [1, 1]
    finally:
        guard.policy, guard.rule = saved, saved_rule
