"""``spill-guard serve --ray --backend vllm``: 2 replicas, each owning one vLLM AsyncLLM, on a local
loopback cluster (4 logical CPUs), end to end through Ray's HTTP proxy with one shared SQLite log.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from vllm_support import requires_vllm

pytestmark = [requires_vllm, pytest.mark.model]
pytest.importorskip("ray.serve", reason="Ray Serve needs the ray extra: pip install 'spill-guard[ray]'")

from vllm_serving_support import (  # noqa: E402
    MODEL, ask, chat_ids, ray_serving, reference_verdict, vllm_config, wait_for_replicas)

MAX_TOKENS = 8
QUESTIONS = [f"What is the capital of {c}?" for c in ("France", "Spain", "Italy", "Japan", "Peru", "Kenya")]


@pytest.fixture(scope="module")
def ray_vllm_server(tmp_path_factory):
    from spill_guard.serving import ServerSettings

    log = tmp_path_factory.mktemp("ray-vllm") / "shared.sqlite"
    with ray_serving(vllm_config(log=str(log)), ServerSettings(max_tokens_limit=64), replicas=2) as url:
        yield {"url": url, "log": log}


def test_two_vllm_replicas_answer_with_the_core_numbers_into_one_log(ray_vllm_server, reference_model):
    from openai import OpenAI

    from spill_guard.review import open_log

    assert len(wait_for_replicas(2)) == 2
    url = ray_vllm_server["url"]
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
    [model] = client.models.list().data
    assert model.id == MODEL
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTIONS[0]}],
                                           max_tokens=MAX_TOKENS, extra_body={"spill_guard": {"token_scores": True}})
    verdict = reply.choices[0].model_extra["spill_guard"]
    answer_ids = [t["token_id"] for t in verdict["token_scores"]]
    reference, risk = reference_verdict(reference_model, QUESTIONS[0], chat_ids(reference_model.tokenizer, QUESTIONS[0]),
                                        answer_ids)
    assert reply.choices[0].message.content == reference.answer
    assert verdict["score"] == pytest.approx(risk, abs=1e-4)
    chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTIONS[0]}],
                                                 max_tokens=MAX_TOKENS, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reference.answer
    assert chunks[-1].choices[0].model_extra["spill_guard"]["score"] == pytest.approx(risk, abs=1e-4)

    chat_url = url + "/v1/chat/completions"
    with httpx.Client(timeout=300) as c:  # what each question answers alone (whichever replica takes it)
        alone = {q: ask(c, chat_url, q, stream=False, max_tokens=MAX_TOKENS) for q in QUESTIONS}
    results, errors = [], []

    def client_loop(i):
        with httpx.Client(timeout=300) as c:
            for j in range(3):
                q = QUESTIONS[(i + j) % len(QUESTIONS)]
                try:
                    results.append((q, *ask(c, chat_url, q, stream=(i + j) % 2 == 1, max_tokens=MAX_TOKENS)))
                except Exception as exc:  # every one is shown by the assertion below
                    errors.append(f"{q}: {exc!r}")

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 12
    for q, text, v in results:
        assert text == alone[q][0], q
        assert v["score"] == pytest.approx(alone[q][1]["score"], abs=1e-4), q
    with open_log(ray_vllm_server["log"]) as sink:
        ids = [r.id for r in sink.records()]
    expected = {verdict["record_id"], *(v["record_id"] for v in (*(a[1] for a in alone.values()),
                                                                 *(r[2] for r in results)))}
    assert len(ids) == len(set(ids)) == len(expected) + 1  # + the streamed request (its id is not read here)
    assert expected <= set(ids)
