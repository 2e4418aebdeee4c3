"""``spill-guard serve --backend vllm``: the same app, generation on vLLM's AsyncLLM, over loopback.

One server (one engine) for the module. The official openai SDK gets the verdicts of a
transformers teacher-forced pass over the same tokens (within 1e-4, greedy); stop sequences,
``n``, ``seed`` and chosen-token logprobs behave as on the transformers backend; what vLLM
cannot produce exactly (top alternatives) is refused with a 400 that says why.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from vllm_support import requires_vllm

pytestmark = [requires_vllm, pytest.mark.model]
pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install 'spill-guard[serve]'")

from vllm_serving_support import MODEL, ask, chat_ids, metric_value, mixed_load, reference_verdict, running, store_stats, vllm_config  # noqa: E402,E501

QUESTION = "What is the capital of France?"


def wait_ready(url: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = httpx.get(url + "/readyz")
        if resp.status_code == 200:
            return
        assert resp.json()["error"]["code"] == "model_loading", resp.text
        time.sleep(0.5)
    raise AssertionError("the vLLM server did not become ready")


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    from spill_guard.serving import ServerSettings, create_app

    log = tmp_path_factory.mktemp("vllm-serve") / "review.jsonl"
    app = create_app(vllm_config(log=str(log)), ServerSettings(max_tokens_limit=256))
    with running(app) as server:
        wait_ready(server.url)
        server.log = log
        yield server


@pytest.fixture()
def client(vllm_server):
    from openai import OpenAI

    return OpenAI(base_url=vllm_server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def _token_ids(guard_object):
    return [t["token_id"] for t in guard_object["token_scores"]]


def test_openai_sdk_chat_and_stream_carry_the_core_numbers(client, vllm_server, reference_model):
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}],
                                           max_tokens=24, extra_body={"spill_guard": {"token_scores": True}})
    verdict = reply.choices[0].model_extra["spill_guard"]
    assert verdict["model"] == MODEL and verdict["action"] in ("passed", "flagged")
    prompt = chat_ids(reference_model.tokenizer, QUESTION)
    answer_ids = _token_ids(verdict)
    reference, risk = reference_verdict(reference_model, QUESTION, prompt, answer_ids)
    assert verdict["score"] == pytest.approx(risk, abs=1e-4)
    assert reply.choices[0].message.content == reference.answer
    ours = np.array([t["spilled_energy"] if t["spilled_energy"] is not None else np.nan
                     for t in verdict["token_scores"]], dtype=float)
    theirs = np.array(reference.spilled_energy, dtype=float)
    known = ~np.isnan(ours)  # the stop token's Δ is not computed (final_step="auto"): null
    assert known[:-1].all() and np.abs(ours[known] - theirs[known]).max() <= 1e-4

    chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}],
                                                 max_tokens=24, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
    tokens = [c.choices[0].model_extra["spill_guard"]["token"] for c in chunks[:-1]]
    assert [t["token_id"] for t in tokens] == answer_ids
    streamed = np.array([t["spilled_energy"] if t["spilled_energy"] is not None else np.nan for t in tokens])
    assert np.abs(streamed[known] - theirs[known]).max() <= 1e-4
    last = chunks[-1].choices[0]
    assert last.finish_reason == "stop"
    assert last.model_extra["spill_guard"]["score"] == pytest.approx(risk, abs=1e-4)
    assert store_stats(vllm_server)["holding"] == 0


def test_stop_sequence_cuts_the_text_and_the_verdict_scores_every_generated_token(client, reference_model):
    question = "List the numbers from 1 to 10, separated by commas."
    full = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}], max_tokens=40)
    text = full.choices[0].message.content
    assert "5" in text, text  # the stop sequence below must occur in the greedy answer
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}],
                                           max_tokens=40, stop=["5"], extra_body={"spill_guard": {"token_scores": True}})
    choice = reply.choices[0]
    verdict = choice.model_extra["spill_guard"]
    assert choice.finish_reason == "stop" and verdict["stop_sequence"] == "5"
    assert choice.message.content == text[: text.index("5")]
    answer_ids = _token_ids(verdict)
    decode = reference_model.tokenizer.decode
    assert "5" in decode(answer_ids) and "5" not in decode(answer_ids[:-1])  # ended on the token completing "5"
    reference, risk = reference_verdict(reference_model, question, chat_ids(reference_model.tokenizer, question), answer_ids)
    assert verdict["score"] == pytest.approx(risk, abs=1e-4)
    last = verdict["token_scores"][-1]  # a text token: its Δ needs the z_(T+1) follow-up, which ran
    assert last["spilled_energy"] == pytest.approx(reference.spilled_energy[-1], abs=1e-4)


def test_n_and_seed_repeat_and_differ_per_choice(client):
    def sample(seed):
        reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Name a fruit."}],
                                               max_tokens=12, n=3, temperature=1.0, seed=seed)
        return [c.message.content for c in reply.choices], [c.model_extra["spill_guard"]["score"] for c in reply.choices]

    (texts, scores), (texts_again, scores_again) = sample(7), sample(7)
    assert texts == texts_again  # the same seed gives the same choices
    assert scores == pytest.approx(scores_again, abs=1e-4)  # (vLLM's batch composition changes float rounding)
    assert len(texts) == 3 and len(set(texts)) > 1  # seed, seed + 1, ...: not three copies of one answer


def test_completions_route_and_chosen_token_logprobs(client, reference_model):
    prompt = "The capital of Japan is"
    reply = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, logprobs=0,
                                      extra_body={"spill_guard": {"token_scores": True}})
    choice = reply.choices[0]
    answer = _token_ids(choice.model_extra["spill_guard"])
    assert len(answer) == 8 and choice.finish_reason == "length"
    reference, risk = reference_verdict(reference_model, prompt, list(reference_model.tokenizer(prompt)["input_ids"]),
                                        answer)
    assert choice.text == reference.answer
    assert choice.model_extra["spill_guard"]["score"] == pytest.approx(risk, abs=1e-4)
    assert choice.logprobs.token_logprobs == pytest.approx([float(v) for v in reference.trace.log_prob], abs=1e-4)

    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}],
                                          max_tokens=8, logprobs=True)
    assert len(chat.choices[0].logprobs.content) > 0


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": QUESTION}], "logprobs": True, "top_logprobs": 2}, "top_logprobs"),
    ({"prompt": "Hello", "logprobs": 2}, "logprobs"),
    ({"messages": [{"role": "user", "content": QUESTION}], "logit_bias": {"42": 5}}, "logit_bias"),
])
def test_what_vllm_cannot_score_exactly_is_refused_with_a_400(vllm_server, body, param):
    route = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    resp = httpx.post(vllm_server.url + route, json={"model": MODEL, "max_tokens": 4, **body}, timeout=60)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and error["code"] == "unsupported_parameter"
    assert param in error["message"]


@pytest.fixture()
def strict_retry(vllm_server):
    """The server's guard under Retry with a threshold every answer crosses (restored afterwards)."""
    import dataclasses

    from spill_guard.policy import Abstain, Resample, Retry

    guard = vllm_server.state.engine.guard
    saved = guard.policy, guard.rule
    guard.policy = Retry(attempts=3, strategy=Resample(temperature=0.9), fallback=Abstain("I am not sure."))
    guard.rule = dataclasses.replace(guard.rule, threshold=-100.0)
    yield
    guard.policy, guard.rule = saved


def test_retry_regenerates_on_vllm_and_abstains(client, vllm_server, strict_retry):
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Name a colour."}],
                                           max_tokens=8, seed=3)
    verdict = reply.choices[0].model_extra["spill_guard"]
    assert verdict["action"] == "abstained" and reply.choices[0].message.content == "I am not sure."
    assert [a["strategy"] for a in verdict["attempts"]] == ["greedy", "resample@0.9", "resample@0.9"]
    assert store_stats(vllm_server)["holding"] == 0


CLIENTS, REQUESTS, LOAD_TOKENS = 16, 3, 6
# 8 questions over 16 clients: each is asked 6 times, in different company each time.
LOAD_QUESTIONS = [f"What is the capital of {c}?" for c in ("France", "Spain", "Italy", "Japan", "Peru", "Kenya",
                                                           "Norway", "Chile")]


def test_concurrent_mixed_streaming_load(vllm_server):
    """16 clients x 3 requests, every other one streamed: no errors, no cross-talk, one record each."""
    from spill_guard.review import open_log

    url = vllm_server.url + "/v1/chat/completions"
    with httpx.Client(timeout=300) as c:  # sequential runs first: what each question answers alone
        reference = {q: ask(c, url, q, stream=False, max_tokens=LOAD_TOKENS) for q in LOAD_QUESTIONS}
    before_metrics = httpx.get(vllm_server.url + "/metrics").text
    with open_log(vllm_server.log) as sink:
        before = {r.id for r in sink.records()}

    started = time.perf_counter()
    results, errors = mixed_load(url, LOAD_QUESTIONS, clients=CLIENTS, requests=REQUESTS, max_tokens=LOAD_TOKENS)
    print(f"load: {CLIENTS * REQUESTS} requests in {time.perf_counter() - started:.1f} s")
    metrics = httpx.get(vllm_server.url + "/metrics").text

    total = CLIENTS * REQUESTS
    assert errors == []
    assert len(results) == total
    for q, text, verdict in results:
        assert text == reference[q][0], q
        assert verdict["score"] == pytest.approx(reference[q][1]["score"], abs=1e-4), q
    with open_log(vllm_server.log) as sink:
        new = {r.id: r for r in sink.records() if r.id not in before}
    assert set(new) == {v["record_id"] for _, _, v in results}  # exactly one record per request
    route = {"route": "/v1/chat/completions", "status": "200"}
    for name, labels in (("spill_guard_requests_total", route), ("spill_guard_answers_total", {}),
                         ("spill_guard_risk_score_count", {})):
        assert metric_value(metrics, name, **labels) - metric_value(before_metrics, name, **labels) == total, name
    assert metric_value(metrics, "spill_guard_errors_total") == metric_value(before_metrics, "spill_guard_errors_total")
    stats = store_stats(vllm_server)
    print(f"store after load: {stats}")
    assert stats["holding"] == 0


def test_a_disconnected_streaming_client_leaves_nothing_in_the_store(vllm_server):
    from spill_guard.review import open_log

    with open_log(vllm_server.log) as sink:
        before = len(sink.records())
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
            "max_tokens": 32, "stream": True}
    with httpx.Client(timeout=60) as c, c.stream("POST", vllm_server.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200  # headers are out; the client leaves before any chunk
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # the answer is still generated and logged, as on transformers
        with open_log(vllm_server.log) as sink:
            if len(sink.records()) > before:
                break
        time.sleep(0.5)
    else:
        raise AssertionError("the disconnected request was never logged")
    async_model = vllm_server.state.engine.generator  # the async facade the server generates through
    assert store_stats(vllm_server)["holding"] == 0
    assert async_model.backend.engine.output_processor.get_num_unfinished_requests() == 0


def test_serve_cli_checks_vllm_options_before_loading(capsys):
    from spill_guard.cli.main import main
    from spill_guard.backends.options import parse_engine_options

    assert main(["serve", "--backend", "vllm", "--early-stop", "2"]) == 2
    assert "early_stop is not available with the vLLM backend" in capsys.readouterr().err
    assert main(["serve", "--backend", "vllm", "--no-guard"]) == 2
    assert "no guard is not available with the vLLM backend" in capsys.readouterr().err
    assert main(["serve", "--engine-option", "max_model_len=1024"]) == 2
    assert "add backend='vllm'" in capsys.readouterr().err
    assert main(["serve", "--backend", "vllm", "--engine-option", "max_model_len"]) == 2
    assert "must be KEY=VALUE" in capsys.readouterr().err
    # the Ray application builder's string form, e.g. `serve run ... engine_options=max_model_len=1024,enforce_eager=true`
    assert parse_engine_options("max_model_len=1024,enforce_eager=true") == {"max_model_len": 1024, "enforce_eager": True}
