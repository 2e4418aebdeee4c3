"""Issue 19, items 3 and 4: a seed torch cannot take and text a tokenizer cannot encode are 400s
in OpenAI's error format on every route, never a 500 with tracebacks in the server log."""

from __future__ import annotations

import json

import httpx
import pytest

from serving_support import MODEL, guarded_app, running

pytestmark = pytest.mark.model

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 2}
COMPLETION = {"model": MODEL, "prompt": "What is 2+2?", "max_tokens": 2}
ROUTES = {"/v1/chat/completions": CHAT, "/v1/completions": COMPLETION}


@pytest.fixture(scope="module")
def server(spill_model):
    with running(guarded_app(spill_model)) as srv:
        yield srv


def post(server, route, body):
    # json.dumps escapes a lone surrogate as \udcff, as any JSON client sends it (httpx's json= cannot encode it).
    return httpx.post(server.url + route, content=json.dumps(body), headers={"Content-Type": "application/json"},
                      timeout=120)


def assert_400(resp, says):
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert says in error["message"], error["message"]
    assert "Traceback" not in resp.text


def assert_no_unhandled_errors(caplog):
    unhandled = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert not unhandled, unhandled


# -- item 3: seeds -----------------------------------------------------------------------------
@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("stream", [False, True])
def test_a_seed_out_of_range_is_a_400_naming_the_range(server, route, stream, caplog):
    for seed in (2**70, 2**64, 2**63, -1, -(2**63) - 1):
        resp = post(server, route, {**ROUTES[route], "temperature": 0.7, "seed": seed, "stream": stream})
        assert_400(resp, f"seed={seed} is out of range")
        error = resp.json()["error"]
        assert error["param"] == "seed" and str(2**63 - 1) in error["message"]
    assert_no_unhandled_errors(caplog)
    for seed in (0, 2**63 - 1):  # the bounds themselves are served, and a seed still repeats its answer
        body = {**ROUTES[route], "temperature": 0.7, "seed": seed, "n": 2}
        first, again = post(server, route, body), post(server, route, body)
        assert first.status_code == 200, first.text
        texts = [[c.get("text", c.get("message")) for c in r.json()["choices"]] for r in (first, again)]
        assert texts[0] == texts[1]


# -- item 4: lone surrogates -------------------------------------------------------------------
#: Every text field of each route, with a lone surrogate in it, and what the 400 says.
SURROGATES = {
    "/v1/completions": [
        ({"prompt": "\udcff What is 2+2?"}, "the prompt is not valid Unicode text"),
        ({"prompt": ["What is 2+2?", "\udcff What is 3+3?"]}, "the prompt is not valid Unicode text"),
        ({"stop": "\udcff"}, "the stop sequence is not valid Unicode text"),
        ({"stop": ["\n", "a\udcff"]}, "the stop sequence is not valid Unicode text"),
    ],
    "/v1/chat/completions": [
        ({"stop": "\udcff"}, "the stop sequence is not valid Unicode text"),
        ({"stop": ["\n", "a\udcff"]}, "the stop sequence is not valid Unicode text"),
        ({"messages": [{"role": "system", "content": "Be \udcff brief."}, {"role": "user", "content": "Hi?"}]},
         "the system message is not valid Unicode text"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "\udcff hi"}]}]},
         "the user message is not valid Unicode text"),
    ],
}


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("stream", [False, True])
def test_a_lone_surrogate_in_any_text_field_is_a_400(server, route, stream, caplog):
    for change, says in SURROGATES[route]:
        resp = post(server, route, {**ROUTES[route], **change, "stream": stream})
        assert_400(resp, says)
        assert "lone surrogate" in resp.json()["error"]["message"]
    assert_no_unhandled_errors(caplog)
