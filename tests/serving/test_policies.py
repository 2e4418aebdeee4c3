"""Every policy through HTTP, on fixed thresholds so the outcome does not depend on the model:
threshold -1e6 flags every answer, +1e6 passes every one."""

from __future__ import annotations

import json

import httpx
import pytest

from serving_support import MODEL, guarded_app, running

pytestmark = pytest.mark.model

ALL_RISKY = -1e6
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Who was the first person to walk on Mars?"}],
        "max_tokens": 6}


def records(path):
    from spill_guard.review import open_log

    with open_log(path) as sink:
        return {r.id: r for r in sink.records()}


@pytest.fixture(scope="module")
def servers(spill_model, tmp_path_factory):
    from spill_guard.guard import EarlyStop
    from spill_guard.policy import Abstain, Flag, Raise, Resample, Retry

    root = tmp_path_factory.mktemp("policies")
    policies = {
        "flag": (Flag(), ALL_RISKY), "pass": (Flag(), 1e6), "abstain": (Abstain("I can't vouch for that."), ALL_RISKY),
        "raise": (Raise(), ALL_RISKY), "early_stop": (Flag(), 1e6),
        "retry": (Retry(attempts=3, strategy=Resample(temperature=0.7), fallback=Abstain("No reliable answer.")), ALL_RISKY),
    }
    early = {"early_stop": EarlyStop(-1e6, min_tokens=2)}  # stops every answer after its third token
    started, stack = {}, []
    try:
        for name, (policy, threshold) in policies.items():
            log = str(root / f"{name}.jsonl")
            ctx = running(guarded_app(spill_model, policy=policy, threshold=threshold, log=log,
                                      **(early if name == "early_stop" else {})))
            started[name] = (ctx.__enter__(), log)
            stack.append(ctx)
        yield started
    finally:
        for ctx in reversed(stack):
            ctx.__exit__(None, None, None)


def post(server, body=BODY, **extra):
    return httpx.post(server.url + "/v1/chat/completions", json={**body, **extra}, timeout=120)


def test_flag_passes_the_answer_marked(servers):
    srv, log = servers["flag"]
    choice = post(srv).json()["choices"][0]
    assert choice["spill_guard"]["action"] == "flagged" and choice["spill_guard"]["flagged"] is True
    record = records(log)[choice["spill_guard"]["record_id"]]
    assert record.answer == choice["message"]["content"] and record.action == "flagged"


def test_a_safe_answer_passes(servers):
    srv, _ = servers["pass"]
    sg = post(srv).json()["choices"][0]["spill_guard"]
    assert sg["action"] == "passed" and sg["flagged"] is False and sg["score"] < sg["threshold"]


def test_abstain_returns_the_reply_and_logs_the_original(servers):
    srv, log = servers["abstain"]
    choice = post(srv, spill_guard={"token_scores": True}).json()["choices"][0]
    sg = choice["spill_guard"]
    assert choice["message"]["content"] == "I can't vouch for that." and sg["action"] == "abstained"
    assert all(t["token"] is None for t in sg["token_scores"]) and sg["span"]["text"] is None  # nothing of the original
    record = records(log)[sg["record_id"]]
    assert record.original_answer and record.original_answer != choice["message"]["content"]


def test_abstain_streams_energies_and_only_then_the_reply(servers):
    srv, _ = servers["abstain"]
    lines = []
    with httpx.stream("POST", srv.url + "/v1/chat/completions", json={**BODY, "stream": True}, timeout=120) as resp:
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    tokens = [c for c in chunks if c["choices"][0]["finish_reason"] is None]
    assert tokens and all(c["choices"][0]["delta"]["content"] == "" for c in tokens)
    assert all(c["choices"][0]["spill_guard"]["token"]["spilled_energy"] is not None for c in tokens)
    final = chunks[-1]["choices"][0]
    assert final["delta"]["content"] == "I can't vouch for that." and final["spill_guard"]["action"] == "abstained"


def test_raise_is_an_openai_error_with_the_verdict(servers):
    srv, log = servers["raise"]
    resp = post(srv)
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "hallucination_detected" and error["type"] == "invalid_request_error"
    [verdict] = error["spill_guard"]
    assert verdict["action"] == "raised" and verdict["record_id"] in records(log)


def test_raise_through_the_openai_sdk(servers):
    from openai import APIError, OpenAI, UnprocessableEntityError

    srv, _ = servers["raise"]
    client = OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(UnprocessableEntityError) as caught:
        client.chat.completions.create(**BODY)
    assert caught.value.code == "hallucination_detected"
    with pytest.raises(APIError, match="flagged as a likely hallucination"):  # streamed: an error event ends the stream
        list(client.chat.completions.create(**BODY, stream=True))


def test_retry_resamples_then_falls_back(servers):
    srv, log = servers["retry"]
    choice = post(srv).json()["choices"][0]
    sg = choice["spill_guard"]
    assert [a["strategy"] for a in sg["attempts"]] == ["greedy", "resample@0.7", "resample@0.7"]
    assert sg["action"] == "abstained" and choice["message"]["content"] == "No reliable answer."
    again = post(srv).json()["choices"][0]["spill_guard"]  # resamples are seeded per request: the same again
    assert [a["score"] for a in again["attempts"]] == pytest.approx([a["score"] for a in sg["attempts"]], abs=1e-5)
    assert len(records(log)) == 2  # one record per request, whatever the attempts


def test_early_stop_cuts_the_answer_and_flags_it(servers):
    srv, _ = servers["early_stop"]
    body = post(srv, max_tokens=12).json()
    choice = body["choices"][0]
    sg = choice["spill_guard"]
    assert sg["early_stopped"] is True and sg["flagged"] is True and sg["action"] == "flagged"
    assert choice["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 3
    with httpx.stream("POST", srv.url + "/v1/chat/completions", json={**BODY, "max_tokens": 12, "stream": True},
                      timeout=120) as resp:
        chunks = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    tokens = [c for c in chunks if c["choices"][0]["finish_reason"] is None]
    assert len(tokens) == 3 and chunks[-1]["choices"][0]["spill_guard"]["early_stopped"] is True
