"""Issue 19 item 13: a batch's review records are written with one fsync, and each record is in
the log before its response arrives.

A real server on 127.0.0.1 with a JSONL log (fsync on). Five clients send requests that fill
exactly one batch (3 × n=2 plus 2 streamed × n=1 = 8 rows = max_batch; max_wait_ms is long,
so the batcher waits for all of them). ``os.fsync`` is wrapped with a counter that records
which file each call synced (instrumentation; the real fsync runs). Before the change, the
model thread wrote and fsynced one record per choice: 8 fsyncs.
"""

from __future__ import annotations

import json
import os
import threading
import warnings

import httpx
import pytest

from serving_support import MODEL, guarded_app, metric_value, running

from spill_guard import VerdictNotLoggedWarning

pytestmark = pytest.mark.model

QUESTIONS = ["What is the capital of France?", "What is 7 * 8?", "Name a colour.",
             "What is the capital of Spain?", "Say a word."]
# (n, streamed) per client: 3 * 2 + 2 * 1 = 8 rows
REQUESTS = [(2, False), (2, False), (2, False), (1, True), (1, True)]


def logged_ids(path) -> set[str]:
    from spill_guard.review import JsonlSink

    return {r.id for r in JsonlSink(path).records()} if os.path.exists(path) else set()


def send(url: str, question: str, n: int, stream: bool, log_path) -> tuple[list[str], set[str]]:
    """One request: the record ids its choices carry, and the ids in the log when its verdicts arrived."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 4, "n": n,
            "temperature": 0.0}
    with httpx.Client(timeout=300) as client:
        if not stream:
            resp = client.post(url + "/v1/chat/completions", json=body)
            seen = logged_ids(log_path)  # the moment the response arrived
            resp.raise_for_status()
            return [c["spill_guard"]["record_id"] for c in resp.json()["choices"]], seen
        ids, seen = [], set()
        with client.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choice = json.loads(line[6:])["choices"][0]
                if choice["finish_reason"] is not None:  # the chunk carrying the verdict
                    seen = logged_ids(log_path)
                    ids.append(choice["spill_guard"]["record_id"])
        return ids, seen


def test_a_batch_of_choices_costs_one_fsync_and_every_record_precedes_its_response(spill_model, tmp_path,
                                                                                     monkeypatch):
    from spill_guard.serving import ServerSettings

    log = tmp_path / "serve.jsonl"
    app = guarded_app(spill_model, log=str(log), settings=ServerSettings(max_batch=8, max_wait_ms=10_000))
    synced: list[str] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:  # instrumentation: which file each fsync syncs; the real one runs
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    results: list[tuple[list[str], set[str]] | BaseException] = [None] * len(REQUESTS)  # type: ignore[list-item]
    with running(app) as srv:
        def client(i: int) -> None:
            n, stream = REQUESTS[i]
            try:
                results[i] = send(srv.url, QUESTIONS[i], n, stream, log)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                results[i] = exc

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(REQUESTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        metrics = httpx.get(srv.url + "/metrics").text

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert metric_value(metrics, "spill_guard_batch_size_count") == 1  # the requests shared one batch ...
    assert metric_value(metrics, "spill_guard_batch_size_sum") == 8
    assert [p for p in synced if p == str(log.resolve())] == [str(log.resolve())]  # ... and one fsync
    all_ids = []
    for (n, _), (ids, seen_at_response) in zip(REQUESTS, results):
        assert len(ids) == n and None not in ids
        assert set(ids) <= seen_at_response  # durably in the log when the response arrived
        all_ids += ids
    assert logged_ids(log) == set(all_ids) and len(all_ids) == 8


def refuse_arithmetic(record):
    """A redact hook that fails on one record, as a user's hook might on odd input."""
    if "7 * 8" in record.question:
        raise ValueError("this hook cannot redact arithmetic")
    return record


@pytest.mark.parametrize("on_log_error", ["raise", "warn"])
def test_a_record_that_fails_in_a_shared_batch_fails_only_its_request(spill_model, tmp_path, on_log_error):
    from spill_guard.review import JsonlSink
    from spill_guard.serving import ServerSettings

    log = tmp_path / "serve.jsonl"
    app = guarded_app(spill_model, log=JsonlSink(log, redact=refuse_arithmetic), on_log_error=on_log_error,
                      settings=ServerSettings(max_batch=4, max_wait_ms=10_000))
    questions = QUESTIONS[:4]  # the second is "What is 7 * 8?"
    responses: list = [None] * 4
    with warnings.catch_warnings(record=True) as caught, running(app) as srv:
        warnings.simplefilter("always")
        def client(i: int) -> None:
            body = {"model": MODEL, "messages": [{"role": "user", "content": questions[i]}], "max_tokens": 4}
            with httpx.Client(timeout=300) as http:
                responses[i] = http.post(srv.url + "/v1/chat/completions", json=body)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        metrics = httpx.get(srv.url + "/metrics").text

    assert metric_value(metrics, "spill_guard_batch_size_count") == 1  # all four shared one batch and one write
    ok = [r.json()["choices"][0]["spill_guard"]["record_id"] for i, r in enumerate(responses) if i != 1]
    assert all(r.status_code == 200 for i, r in enumerate(responses) if i != 1) and None not in ok
    if on_log_error == "raise":
        assert responses[1].status_code == 500 and "Traceback" not in responses[1].text
    else:
        assert responses[1].status_code == 200
        assert responses[1].json()["choices"][0]["spill_guard"]["record_id"] is None
        assert [str(w.message) for w in caught if issubclass(w.category, VerdictNotLoggedWarning)] == [
            "verdict on 'What is 7 * 8?' returned without a review record: ValueError: this hook cannot redact "
            "arithmetic"]
    assert logged_ids(log) == set(ok)  # the other requests' records were stored
