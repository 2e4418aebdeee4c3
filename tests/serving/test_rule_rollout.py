"""A new calibration rolled out to a running server, without a restart (``PUT /admin/rule``).

Real uvicorn servers on 127.0.0.1, the embedded model, real httpx clients. Calibration A is the
model's packaged one; B is A refitted to a threshold every answer crosses (another version).
Checked: the swap under concurrent load fails no request, answers decided before it name A and
answers asked after it name B (response and review record alike); ``/metrics`` names the rule in
force; the admin routes refuse what they must (off, no key, wrong key, bad body, a calibration of
another model) and leave the rule as it was.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import httpx
import pytest

from serving_support import MODEL, metric_value, running

pytestmark = pytest.mark.model

ADMIN = "admin-key-0123456789"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def calibrations(spill_model):
    from spill_guard.calibration.packaged import packaged_calibration

    a = packaged_calibration(spill_model)
    b = a.model_copy(update={"threshold": -100.0})  # every answer crosses it
    assert a.version != b.version and a.version.startswith("cal-")
    return a, b


def server_app(spill_model, calibration, log, **settings):
    from spill_guard import SpillGuard
    from spill_guard.serving import ServerSettings, create_app

    guard = SpillGuard(spill_model, calibration=calibration, log=str(log))
    return create_app(guard, ServerSettings(max_batch=8, max_wait_ms=20, **settings))


def ask(client, url):
    reply = client.post(url + "/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "max_tokens": 6})
    return reply.status_code, (reply.json()["choices"][0]["spill_guard"] if reply.status_code == 200 else reply.text)


def put_rule(url, body, key=ADMIN):
    headers = {} if key is None else {"X-Admin-Key": key}
    return httpx.put(url + "/admin/rule", json=body, headers=headers, timeout=120)


def test_the_guard_names_the_rule_that_judged_each_answer(spill_model, calibrations, tmp_path):
    from spill_guard import SpillGuard
    from spill_guard.review import open_log

    a, b = calibrations
    guard = SpillGuard(spill_model, calibration=a, log=str(tmp_path / "review.jsonl"), max_new_tokens=6)
    first = guard.ask("What is the capital of France?")
    assert first.rule_version == a.version
    previous = guard.recalibrate(calibration=b)
    assert previous.version == a.version and guard.rule.version == b.version
    second = guard.ask("What is the capital of France?")
    assert second.rule_version == b.version and second.flagged and second.threshold == -100.0
    changed = dataclasses.replace(guard.rule, threshold=0.25)  # no longer the rule b fixed
    assert changed.version == "threshold:0.25"
    guard.recalibrate(threshold=1.5)
    assert guard.rule.version == "threshold:1.5" and guard.rule.spec == previous.spec
    with open_log(str(tmp_path / "review.jsonl")) as sink:
        assert [r.rule_version for r in sink.records()] == [a.version, b.version]


def test_a_rollout_under_load_fails_no_request_and_splits_at_the_swap(spill_model, calibrations, tmp_path):
    from spill_guard.review import open_log

    a, b = calibrations
    log = tmp_path / "review.jsonl"
    results: list[tuple[float, float, int, object]] = []
    lock = threading.Lock()
    with running(server_app(spill_model, a, log, admin_key=ADMIN)) as server:

        def client_loop(n: int) -> None:
            with httpx.Client(timeout=120) as client:
                for _ in range(n):
                    started = time.monotonic()
                    status, body = ask(client, server.url)
                    with lock:
                        results.append((started, time.monotonic(), status, body))

        threads = [threading.Thread(target=client_loop, args=(6,)) for _ in range(4)]  # 24 requests, 4 in flight
        for t in threads:
            t.start()
        while True:  # swap once some answers are out
            with lock:
                if len(results) >= 6:
                    break
            time.sleep(0.05)
        sent = time.monotonic()
        swapped = put_rule(server.url, {"calibration": json.loads(b.to_json())})
        done = time.monotonic()
        for t in threads:
            t.join(300)
        metrics = httpx.get(server.url + "/metrics", timeout=30).text

    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["rule"]["version"] == b.version and swapped.json()["previous"]["version"] == a.version
    assert len(results) == 24 and all(status == 200 for _, _, status, _ in results), results
    before = [body["rule_version"] for started, ended, _, body in results if ended < sent]
    after = [body["rule_version"] for started, ended, _, body in results if started > done]
    assert before and set(before) == {a.version}
    assert after and set(after) == {b.version}
    assert all(body["flagged"] for started, _, _, body in results if started > done)  # B flags every answer
    with open_log(str(log)) as sink:
        logged = {r.id: r.rule_version for r in sink.records()}
    assert {body["record_id"]: body["rule_version"] for _, _, _, body in results} == logged
    assert metric_value(metrics, "spill_guard_rule_info", version=b.version) == 1
    assert metric_value(metrics, "spill_guard_rule_info", version=a.version) == 0


def test_the_admin_route_refuses_and_leaves_the_rule_alone(spill_model, calibrations, tmp_path):
    a, b = calibrations
    with running(server_app(spill_model, a, tmp_path / "off.jsonl")) as server:  # no admin key configured
        off = put_rule(server.url, {"threshold": 1.0})
        assert off.status_code == 403 and off.json()["error"]["code"] == "admin_disabled"
    with running(server_app(spill_model, a, tmp_path / "on.jsonl", admin_key=ADMIN)) as server:
        assert put_rule(server.url, {"threshold": 1.0}, key=None).status_code == 401
        assert put_rule(server.url, {"threshold": 1.0}, key="wrong-key-0123456789").status_code == 401
        for body in ({}, {"threshold": "high"}, {"threshold": 1.0, "calibration": {}}, {"calibration": {"x": 1}}):
            refused = put_rule(server.url, body)
            assert refused.status_code == 400, (body, refused.text)
        other = json.loads(a.to_json())
        other["tokenizer"]["vocab_size"] += 1  # a calibration of another model's tokenizer
        mismatch = put_rule(server.url, {"calibration": other})
        assert mismatch.status_code == 400 and "the rule was not changed" in mismatch.json()["error"]["message"]
        shown = httpx.get(server.url + "/admin/rule", headers={"X-Admin-Key": ADMIN}, timeout=30).json()["rule"]
        assert shown["version"] == a.version and shown["threshold"] == a.threshold
        moved = put_rule(server.url, {"threshold": 2.5})
        assert moved.status_code == 200 and moved.json()["rule"]["version"] == "threshold:2.5"
        with httpx.Client(timeout=120) as client:
            status, verdict = ask(client, server.url)
        assert status == 200 and verdict["rule_version"] == "threshold:2.5" and verdict["threshold"] == 2.5


def test_admin_and_api_keys_must_differ_and_be_long_enough():
    from spill_guard.errors import InvalidParameterError
    from spill_guard.serving import ServerSettings

    with pytest.raises(InvalidParameterError, match="admin key must be at least 8"):
        ServerSettings(admin_key="short")
    with pytest.raises(InvalidParameterError, match="must differ from the API key"):
        ServerSettings(api_key=ADMIN, admin_key=ADMIN)


def _wait(predicate, timeout=120.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s")


def test_a_watched_calibration_file_rolls_out_when_it_changes(calibrations, tmp_path):
    """``--watch-calibration``: a rewritten file is rolled out; a broken one is refused and the rule stays."""
    from spill_guard.serving import GuardConfig, ServerSettings, create_app

    a, b = calibrations
    path = tmp_path / "calibration.json"
    a.save(path)
    config = GuardConfig(device="cpu", calibration=str(path), log=str(tmp_path / "review.jsonl"))
    with running(create_app(config, ServerSettings(max_wait_ms=5, watch_calibration_s=0.1))) as server:
        _wait(lambda: httpx.get(server.url + "/readyz", timeout=30).status_code == 200)
        with httpx.Client(timeout=120) as client:

            def version() -> str:
                status, verdict = ask(client, server.url)
                assert status == 200, verdict
                return verdict["rule_version"]

            assert version() == a.version
            b.save(path)  # atomic replace, as `spill-guard calibrate -o` writes it
            _wait(lambda: version() == b.version, timeout=60)
            broken = tmp_path / "broken.json"
            broken.write_text('{"schema_version": 1, "threshold": ', encoding="utf-8")
            broken.replace(path)
            time.sleep(1.0)  # ten polls
            assert version() == b.version  # refused (logged), the rule in force stays
            a.save(path)
            _wait(lambda: version() == a.version, timeout=60)  # the next good file is taken again
            metrics = httpx.get(server.url + "/metrics", timeout=30).text
    assert metric_value(metrics, "spill_guard_rule_info", version=a.version) == 1


def test_watching_needs_a_calibration_file_and_a_sane_interval(spill_model):
    from spill_guard import SpillGuard
    from spill_guard.errors import InvalidParameterError
    from spill_guard.serving import GuardConfig, ServerSettings, create_app

    with pytest.raises(InvalidParameterError, match="watches the server's calibration file"):
        create_app(SpillGuard(spill_model), ServerSettings(watch_calibration_s=1.0))
    with pytest.raises(InvalidParameterError, match="watches the server's calibration file"):
        create_app(GuardConfig(threshold=0.5), ServerSettings(watch_calibration_s=1.0))
    for bad in (0, -1, True, "2", 7200):
        with pytest.raises(InvalidParameterError, match="between 0.05 and 3600"):
            ServerSettings(watch_calibration_s=bad)
