"""Security by default and every bad request a 4xx in OpenAI's error format, no traceback."""

from __future__ import annotations

import functools

import httpx
import pytest

from serving_support import API_KEY, MODEL, guarded_app, running

pytestmark = pytest.mark.model

POST = functools.partial(httpx.post, timeout=120)
GET = functools.partial(httpx.get, timeout=120)
AUTH = {"Authorization": f"Bearer {API_KEY}"}
GOOD = {"model": MODEL, "messages": [{"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def server(spill_model):
    from spill_guard.serving import ServerSettings

    settings = ServerSettings(api_key=API_KEY, max_tokens_limit=16, default_max_tokens=8, max_body_bytes=4000)
    with running(guarded_app(spill_model, settings=settings)) as srv:
        yield srv


def assert_openai_error(resp, status, code=None, param=None, says=None):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert error["message"] and "Traceback" not in resp.text and 'File "' not in resp.text
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    if says is not None:
        assert says in error["message"], error["message"]
    return error


def test_probes_answer_without_the_key(server):
    assert GET(server.url + "/healthz").json() == {"status": "ok"}
    ready = GET(server.url + "/readyz").json()
    assert ready["status"] == "ready" and ready["model"] == MODEL


@pytest.mark.parametrize("route", ["/v1/models", "/metrics", "/v1/chat/completions"])
def test_every_other_route_needs_the_key(server, route):
    method = POST if "completions" in route else httpx.get
    kwargs = {"json": GOOD} if method is POST else {}
    assert_openai_error(method(server.url + route, **kwargs), 401, "invalid_api_key", says="Authorization: Bearer")
    bad = method(server.url + route, headers={"Authorization": "Bearer wrong-key-123"}, **kwargs)
    assert_openai_error(bad, 401, "invalid_api_key", says="invalid API key")
    assert method(server.url + route, headers=AUTH, **kwargs).status_code == 200


@pytest.mark.parametrize("change, status, code, param, says", [
    ({"max_tokens": "lots"}, 400, "invalid_request", "max_tokens", "max_tokens"),
    ({"messages": "hello"}, 400, "invalid_request", "messages", "messages"),
    ({"messages": []}, 400, "invalid_request", "messages", "at least 1"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "invalid_request", "messages", "role"),
    ({"messages": [{"role": "system", "content": "Be brief."}]}, 400, "InvalidInputError", None, "user message"),
    ({"temperature": 7}, 400, "invalid_request", "temperature", "temperature"),
    ({"model": "gpt-4o"}, 404, "model_not_found", "model", MODEL),
    ({"max_tokens": 17}, 400, "max_tokens_too_large", "max_tokens", "limit of 16"),
    ({"n": 99}, 400, "n_too_large", "n", "n=99"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "unsupported_parameter", "tools", "tool"),
    ({"presence_penalty": 0.5}, 400, "unsupported_parameter", "presence_penalty", "penalties"),
    ({"top_logprobs": 2}, 400, None, "top_logprobs", "logprobs: true"),
    ({"stream": True, "logprobs": True, "top_logprobs": 2}, 400, None, "top_logprobs", "streaming"),
])
def test_bad_chat_requests(server, change, status, code, param, says):
    body = {**GOOD, **change}
    assert_openai_error(POST(server.url + "/v1/chat/completions", json=body, headers=AUTH),
                        status, code, param, says)


def test_missing_model_field(server):
    body = {k: v for k, v in GOOD.items() if k != "model"}
    assert_openai_error(POST(server.url + "/v1/chat/completions", json=body, headers=AUTH),
                        400, "invalid_request", "model", "'model' is required")


def test_malformed_json(server):
    resp = POST(server.url + "/v1/chat/completions", content=b'{"model": "x", "messages": [', headers={
        **AUTH, "Content-Type": "application/json"})
    assert_openai_error(resp, 400, "invalid_json", says="not valid JSON")


def test_body_too_big(server):
    body = {**GOOD, "messages": [{"role": "user", "content": "x" * 5000}]}
    assert_openai_error(POST(server.url + "/v1/chat/completions", json=body, headers=AUTH),
                        413, "request_too_large", says="4000 bytes")


def test_body_too_big_without_content_length(server):
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    resp = POST(server.url + "/v1/chat/completions", content=chunks(),
                      headers={**AUTH, "Content-Type": "application/json"})
    assert_openai_error(resp, 413, "request_too_large")


def test_bad_completion_requests(server):
    url = server.url + "/v1/completions"
    assert_openai_error(POST(url, json={"model": MODEL, "prompt": "  "}, headers=AUTH), 400, param="prompt")
    assert_openai_error(POST(url, json={"model": MODEL, "prompt": "Hi", "echo": True}, headers=AUTH),
                        400, "unsupported_parameter", "echo")
    assert_openai_error(POST(url, json={"model": MODEL, "prompt": "Hi", "logprobs": 9}, headers=AUTH),
                        400, "invalid_request", "logprobs")


def test_unknown_route_and_method(server):
    assert_openai_error(GET(server.url + "/v1/nothing", headers=AUTH), 404, "not_found")
    assert_openai_error(GET(server.url + "/v1/chat/completions", headers=AUTH), 405, "method_not_allowed")


def test_errors_are_counted_by_type(server):
    from serving_support import metric_value

    POST(server.url + "/v1/chat/completions", json={**GOOD, "max_tokens": 99}, headers=AUTH)
    text = GET(server.url + "/metrics", headers=AUTH).text
    assert metric_value(text, "spill_guard_errors_total", type="max_tokens_too_large") >= 1
    assert metric_value(text, "spill_guard_errors_total", type="invalid_api_key") >= 1


def test_a_server_fault_is_a_generic_500(spill_model, tmp_path):
    """The review log cannot be written (a path under /proc): the client gets a generic OpenAI-format 500."""
    with running(guarded_app(spill_model, log="/proc/spill-guard-no-such-dir/review.jsonl")) as srv:
        resp = POST(srv.url + "/v1/chat/completions", json=GOOD, timeout=120)
        error = assert_openai_error(resp, 500, "internal_error")
        assert "proc" not in error["message"]  # no server internals leak
        assert GET(srv.url + "/healthz").status_code == 200  # and the server keeps serving


def test_readiness_waits_for_the_model():
    from spill_guard.serving import GuardConfig, create_app

    app = create_app(GuardConfig(device="cpu"), load_on_startup=False)
    with running(app) as srv:
        assert GET(srv.url + "/healthz").status_code == 200
        assert_openai_error(GET(srv.url + "/readyz"), 503, "model_loading")
        assert_openai_error(POST(srv.url + "/v1/chat/completions", json=GOOD), 503, "model_loading")
        srv.state.load()
        assert GET(srv.url + "/readyz").json()["status"] == "ready"
        assert POST(srv.url + "/v1/chat/completions", json=GOOD, timeout=120).status_code == 200


def test_review_log_redacts_as_configured(tmp_path):
    import time

    from spill_guard.review import open_log
    from spill_guard.serving import GuardConfig, create_app

    log = tmp_path / "redacted.jsonl"
    with running(create_app(GuardConfig(device="cpu", log=str(log), redact=()))) as srv:
        deadline = time.monotonic() + 300
        while GET(srv.url + "/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        body = {**GOOD, "messages": [{"role": "user", "content": "Should I email bob@example.com today?"}]}
        assert POST(srv.url + "/v1/chat/completions", json=body).status_code == 200
    with open_log(log) as sink:
        [record] = sink.records()
    assert "bob@example.com" not in record.question and "[REDACTED]" in record.question
