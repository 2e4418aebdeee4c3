"""A bounded load test on loopback: 16 concurrent clients x 5 requests, every other one streamed.

Zero errors, zero cross-talk (each answer and score equal a sequential greedy run of its own
question), exactly one review-log record per request, /metrics counts that add up, and
batches of more than one sequence actually ran.
"""

from __future__ import annotations

import httpx
import pytest

from serving_support import guarded_app, metric_value, mixed_load, running

pytestmark = pytest.mark.model

CLIENTS, REQUESTS, MAX_TOKENS = 16, 5, 6
QUESTIONS = [f"What is the capital of {c}?" for c in (
    "France", "Spain", "Italy", "Japan", "Peru", "Kenya", "Norway", "Chile",
    "Egypt", "Canada", "Poland", "India", "Ghana", "Cuba", "Nepal", "Mali")]


def test_concurrent_mixed_streaming_load(spill_model, tmp_path):
    from spill_guard.models.prompting import chat_prompt_ids
    from spill_guard.review import open_log
    from spill_guard.serving import ServerSettings

    log = tmp_path / "load.jsonl"
    app = guarded_app(spill_model, log=str(log), settings=ServerSettings(max_batch=16, max_wait_ms=20))
    guard = app.state.server.engine.guard
    reference = {}
    for q in QUESTIONS:  # sequential greedy runs, one question at a time, straight through the core
        [scored] = spill_model.generate_from_ids([chat_prompt_ids(spill_model.tokenizer, [{"role": "user", "content": q}])],
                                                 max_new_tokens=MAX_TOKENS, stats=guard.capture_stats)
        reference[q] = (scored.answer, guard.assess(scored, q).risk)

    with running(app) as srv:
        results, errors = mixed_load(srv.url + "/v1/chat/completions", QUESTIONS, clients=CLIENTS,
                                     requests=REQUESTS, max_tokens=MAX_TOKENS)
        metrics = httpx.get(srv.url + "/metrics").text

    total = CLIENTS * REQUESTS
    assert errors == []
    assert len(results) == total
    for q, text, verdict in results:
        answer, risk = reference[q]
        assert text == answer, q
        assert verdict["score"] == pytest.approx(risk, abs=1e-4), q
    with open_log(log) as sink:
        records = sink.records()
    assert len(records) == total
    assert {r.id for r in records} == {v["record_id"] for _, _, v in results}
    assert all(r.metadata["route"] == "chat" for r in records)
    assert metric_value(metrics, "spill_guard_requests_total", route="/v1/chat/completions", status="200") == total
    assert metric_value(metrics, "spill_guard_answers_total") == total
    assert metric_value(metrics, "spill_guard_risk_score_count") == total
    assert metric_value(metrics, "spill_guard_batch_size_sum") == total  # every sequence in exactly one batch
    batches = metric_value(metrics, "spill_guard_batch_size_count")
    assert batches < total  # so some batches held several requests
    assert metric_value(metrics, "spill_guard_batch_size_bucket", le="1.0") < batches
    assert metric_value(metrics, "spill_guard_errors_total") == 0
