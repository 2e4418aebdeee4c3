"""Helpers of the server tests: real uvicorn servers on 127.0.0.1 (a free port each), started in a
thread and stopped at teardown. Servers share the session's embedded model; each app has its
own guard, review log, metrics registry and worker thread.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any, Iterator

MODEL = "smollm2-135m-instruct"
API_KEY = "test-key-0123456789"


class LiveServer:
    """One uvicorn server in a daemon thread."""

    def __init__(self, app: Any):
        import uvicorn

        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> Any:
        return self.app.state.server

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@contextlib.contextmanager
def running(app: Any) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()


def guarded_app(spill_model: Any, *, policy: Any = None, log: Any = None, settings: Any = None,
                threshold: float | None = None, **guard_kwargs: Any) -> Any:
    from spill_guard import SpillGuard
    from spill_guard.serving import ServerSettings, create_app

    guard = SpillGuard(spill_model, policy=policy, log=log, threshold=threshold, **guard_kwargs)
    return create_app(guard, settings or ServerSettings(max_batch=8, max_wait_ms=20))


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (Prometheus text format)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def ask(client: Any, url: str, question: str, stream: bool, *, max_tokens: int) -> tuple[str, dict]:
    """One greedy chat request to ``url`` (httpx): ``(text, spill_guard verdict)``, streamed or not."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens}
    if not stream:
        resp = client.post(url, json=body)
        resp.raise_for_status()
        choice = resp.json()["choices"][0]
        return choice["message"]["content"], choice["spill_guard"]
    text, verdict = "", None
    with client.stream("POST", url, json={**body, "stream": True}) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            assert "error" not in chunk, chunk
            choice = chunk["choices"][0]
            text += choice["delta"].get("content") or ""
            if choice["finish_reason"] is not None:
                verdict = choice["spill_guard"]
    return text, verdict
