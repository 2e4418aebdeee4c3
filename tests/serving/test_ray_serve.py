"""The guarded server on Ray Serve: 2 replicas of the same app on a local cluster, through HTTP.

One cluster for the module (bound to loopback, stopped at teardown): the replicas answer the
official OpenAI SDK with the core's numbers, write one shared JSONL review log from two
processes without losing a record, and when one replica is SIGKILLed under load only the
requests in flight fail, visibly, while Ray brings the replica back.
"""

from __future__ import annotations

import os
import signal
import threading

import httpx
import pytest

from serving_support import MODEL, ray_serving, wait_for_replicas

pytestmark = pytest.mark.model
pytest.importorskip("ray.serve", reason="Ray Serve needs the ray extra: pip install 'spill-guard[ray]'")

MAX_TOKENS = 8
QUESTIONS = [f"What is the capital of {c}?" for c in ("France", "Spain", "Italy", "Japan", "Peru", "Kenya")]


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    from spill_guard.serving import GuardConfig, ServerSettings

    log = tmp_path_factory.mktemp("ray") / "shared.jsonl"
    with ray_serving(GuardConfig(device="cpu", log=str(log)), ServerSettings(max_batch=4, max_wait_ms=20)) as url:
        yield {"url": url, "log": log}


def _reference(spill_model, question):
    from spill_guard import SpillGuard
    from spill_guard.models.prompting import chat_prompt_ids

    guard = SpillGuard(spill_model)
    [scored] = spill_model.generate_from_ids(
        [chat_prompt_ids(spill_model.tokenizer, [{"role": "user", "content": question}])],
        max_new_tokens=MAX_TOKENS, stats=guard.capture_stats)
    return scored.answer, guard.assess(scored, question).risk


def _chat(client, url, question):
    resp = client.post(url + "/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": MAX_TOKENS})
    resp.raise_for_status()
    choice = resp.json()["choices"][0]
    return choice["message"]["content"], choice["spill_guard"]


def test_two_replicas_serve_the_openai_sdk_with_the_core_numbers(ray_server, spill_model):
    from openai import OpenAI

    assert len(wait_for_replicas(2)) == 2
    client = OpenAI(base_url=ray_server["url"] + "/v1", api_key="unused", max_retries=0, timeout=300)
    [model] = client.models.list().data
    assert model.id == MODEL
    question = QUESTIONS[0]
    answer, risk = _reference(spill_model, question)
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}],
                                           max_tokens=MAX_TOKENS)
    assert reply.choices[0].message.content == answer
    assert reply.choices[0].model_extra["spill_guard"]["score"] == pytest.approx(risk, abs=1e-4)
    streamed = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}],
                                              max_tokens=MAX_TOKENS, stream=True)
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer
    assert chunks[-1].choices[0].model_extra["spill_guard"]["score"] == pytest.approx(risk, abs=1e-4)


def test_concurrent_requests_across_replicas_log_one_record_each(ray_server, spill_model):
    from spill_guard.review import open_log

    reference = {q: _reference(spill_model, q) for q in QUESTIONS}
    with open_log(ray_server["log"]) as sink:
        before = {r.id for r in sink.records()}
    results, errors = [], []

    def client_loop(i):
        with httpx.Client(timeout=300) as client:
            for j in range(3):
                q = QUESTIONS[(i + j) % len(QUESTIONS)]
                try:
                    results.append((q, *_chat(client, ray_server["url"], q)))
                except Exception as exc:  # every one is shown by the assertion below
                    errors.append(f"{q}: {exc!r}")

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 18
    for q, text, verdict in results:
        assert text == reference[q][0], q
        assert verdict["score"] == pytest.approx(reference[q][1], abs=1e-4), q
    with open_log(ray_server["log"]) as sink:
        new = {r.id: r for r in sink.records() if r.id not in before}
    assert set(new) == {v["record_id"] for _, _, v in results}  # both replicas' writes, none lost


def test_sigkill_of_one_replica_fails_only_in_flight_requests(ray_server):
    from spill_guard.review import open_log

    pids = wait_for_replicas(2)
    outcomes, started = [], threading.Semaphore(0)

    def client_loop(i):
        with httpx.Client(timeout=300) as client:
            for j in range(4):
                q = QUESTIONS[(i + j) % len(QUESTIONS)]
                started.release()
                try:
                    text, verdict = _chat(client, ray_server["url"], q)
                    outcomes.append(("ok", verdict["record_id"]))
                except (httpx.HTTPError, KeyError) as exc:  # a visible failure: an error status or a cut connection
                    outcomes.append(("failed", repr(exc)))

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for _ in range(6):  # let the load get going, then kill one replica in the middle of it
        started.acquire(timeout=300)
    os.kill(pids[0], signal.SIGKILL)
    for t in threads:
        t.join()
    failed = [o for o in outcomes if o[0] == "failed"]
    ok = [o[1] for o in outcomes if o[0] == "ok"]
    assert len(outcomes) == 16
    assert len(failed) <= 4, failed  # at most one request in flight per client when the replica died
    assert len(ok) >= 12

    new_pids = wait_for_replicas(2, replacing=pids[0])  # Ray replaces the killed replica
    assert pids[0] not in new_pids and pids[1] in new_pids
    with httpx.Client(timeout=300) as client:
        _chat(client, ray_server["url"], QUESTIONS[0])
    with open_log(ray_server["log"]) as sink:
        ids = {r.id for r in sink.records()}  # the log reads back after the kill
    assert set(ok) <= ids


def test_app_builder_rejects_unknown_and_malformed_arguments():
    from spill_guard.errors import InvalidParameterError
    from spill_guard.serving.ray_app import app_builder

    with pytest.raises(InvalidParameterError, match="unknown argument"):
        app_builder({"modle": "x"})
    with pytest.raises(InvalidParameterError, match="max_batch must be an integer"):
        app_builder({"max_batch": "eight"})
    with pytest.raises(InvalidParameterError, match="replicas must be an integer >= 1"):
        app_builder({"replicas": "0"})
    with pytest.raises(InvalidParameterError, match="policy must be one of"):
        app_builder({"policy": "ignore"})


def test_serve_cli_checks_ray_options_before_starting_anything(capsys):
    from spill_guard.cli.main import main

    assert main(["serve", "--ray", "--replicas", "0"]) == 2
    assert "--replicas must be an integer >= 1" in capsys.readouterr().err
    assert main(["serve", "--replicas", "2"]) == 2
    assert "need --ray" in capsys.readouterr().err
    assert main(["serve", "--ray", "--num-cpus-per-replica", "0"]) == 2
    assert "--num-cpus-per-replica must be > 0" in capsys.readouterr().err
