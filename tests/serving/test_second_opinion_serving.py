"""The server's second opinions: the samples of requests decided at the same time share generate calls
(the engine's sample batcher, each row with its own seed), and each request's samples are still the
library guard's samples for its question (same seeds, per-row draws)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from serving_support import MODEL, guarded_app, running

from spill_guard.calibration.cascade import Cascade
from spill_guard.calibration.consistency import Consistency
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import Prompt
from spill_guard.serving import ServerSettings

pytestmark = pytest.mark.model

QUESTIONS = [
    "What is the capital of Peru?",
    "Who wrote the novel Dracula?",
    "What is the chemical symbol of gold?",
    "How many legs does a spider have?",
]
OPINION = Consistency(samples=3, temperature=1.0, cascade=Cascade(-100.0, 100.0, 0.5))  # every answer sampled
MAX_TOKENS = 16


class CallLog:
    """Records every backend generate call's rows (prompt count, temperatures, seeds), then calls through."""

    def __init__(self, backend):
        self.backend, self.real, self.calls = backend, backend.generate, []

    def __enter__(self):
        def generate(prompts, params, **kwargs):
            rows = params if isinstance(params, (list, tuple)) else [params] * len(prompts)
            self.calls.append([(p.temperature, p.seed) for p in rows])
            return self.real(prompts, params, **kwargs)

        self.backend.generate = generate
        return self

    def __exit__(self, *exc):
        del self.backend.generate


def test_concurrent_second_opinions_share_sample_calls_and_equal_the_librarys(spill_model):
    import openai

    settings = ServerSettings(max_batch=8, max_wait_ms=300)
    app = guarded_app(spill_model, threshold=0.0, second_opinion=OPINION, max_new_tokens=MAX_TOKENS, settings=settings)
    with CallLog(spill_model.backend) as log, running(app) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)

        def ask(question):
            reply = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": question}], max_tokens=MAX_TOKENS
            )
            return reply.choices[0].message.content, reply.choices[0].model_extra["spill_guard"]

        with ThreadPoolExecutor(len(QUESTIONS)) as pool:  # inside one grouping window
            replies = list(pool.map(ask, QUESTIONS))
    sampled_calls = [c for c in log.calls if c and c[0][0] > 0]
    assert sum(len(c) for c in sampled_calls) == OPINION.samples * len(QUESTIONS)
    assert max(len(c) for c in sampled_calls) > OPINION.samples, log.calls  # several requests' samples in one call
    for call in sampled_calls:
        assert all(seed is not None for _, seed in call)  # every row seeded on its own

    # Each request's samples are the draws of its own seeds, as a library guard (which samples one question's
    # rows in a call of their own) or one-row calls draw them: batching with other requests changed nothing.
    params = GenerationParams(max_new_tokens=MAX_TOKENS)
    for question, (content, verdict) in zip(QUESTIONS, replies):
        prompt = Prompt.for_chat(spill_model.tokenizer, [{"role": "user", "content": question}])
        alone = [spill_model.generate_params([prompt.ids], p)[0].answer for p in OPINION.sample_params(params)]
        opinion = verdict["second_opinion"]
        assert [a["answer"] for a in opinion["answers"]] == alone, question
        compared = OPINION.compare(content, alone, question)  # Flag: the answer shown is the first answer
        assert opinion["agreement"] == compared.agreement and opinion["samples"] == OPINION.samples
