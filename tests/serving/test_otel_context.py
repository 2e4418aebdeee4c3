"""Requests batched into one generate still get their evaluation event on their own span.

The guard decides and logs in the server's model thread; each request's context travels with
its batch job, so the ``gen_ai.evaluation.result`` event lands on the span that was current
when that request arrived (here opened by a tiny tracing middleware, as an ASGI
instrumentation would), not on a neighbour's.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from serving_support import MODEL, guarded_app, running

pytestmark = pytest.mark.model
pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the test extra)")

QUESTIONS = ["What is the capital of France?", "Name a planet.", "Who wrote Dracula?", "What is 7 * 8?"]


class TracingMiddleware:
    """One span per HTTP request, named after its ``x-test-name`` header, current while it runs."""

    def __init__(self, app, tracer):
        self.app, self.tracer = app, tracer

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        name = dict(scope["headers"]).get(b"x-test-name", b"untraced").decode()
        with self.tracer.start_as_current_span(name):
            await self.app(scope, receive, send)


def test_batched_requests_emit_their_evaluation_on_their_own_span(spill_model, monkeypatch):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from spill_guard.observability import otel
    from spill_guard.serving import ServerSettings

    monkeypatch.delenv(otel.ENV_VAR, raising=False)
    otel.reset()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = guarded_app(spill_model, settings=ServerSettings(max_batch=8, max_wait_ms=200))
    results, errors = {}, []
    with running(TracingMiddleware(app, provider.get_tracer("test"))) as srv:

        def ask(i, question):
            try:
                resp = httpx.post(srv.url + "/v1/chat/completions", timeout=300, headers={"x-test-name": f"req-{i}"},
                                  json={"model": MODEL, "max_tokens": 6,
                                        "messages": [{"role": "user", "content": question}]})
                resp.raise_for_status()
                results[f"req-{i}"] = resp.json()["choices"][0]["spill_guard"]
            except Exception as exc:  # shown by the assertion below
                errors.append(repr(exc))

        threads = [threading.Thread(target=ask, args=(i, q)) for i, q in enumerate(QUESTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batches = app.state.server.metrics.batch_size.collect()[0]
    otel.reset()
    assert errors == []
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(results) <= set(spans)
    for name, verdict in results.items():
        events = [e for e in spans[name].events if e.name == otel.EVENT_NAME]
        assert len(events) == 1, name
        assert events[0].attributes["gen_ai.evaluation.score.value"] == pytest.approx(verdict["score"])
        assert events[0].attributes["gen_ai.evaluation.score.label"] == verdict["action"]
    count = next(s.value for s in batches.samples if s.name.endswith("_count"))
    assert count < len(QUESTIONS)  # some requests really shared a batch
