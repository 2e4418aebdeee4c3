"""Helpers of the server tests: real uvicorn servers on 127.0.0.1 (a free port each), started in a
thread and stopped at teardown. Servers share the session's embedded model; each app has its
own guard, review log, metrics registry and worker thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
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


def mixed_load(url: str, questions: list[str], *, clients: int, requests: int,
               max_tokens: int) -> tuple[list[tuple[str, str, dict]], list[str]]:
    """``clients`` threads, each sending ``requests`` chat requests over its own httpx client.

    Client ``i``'s request ``j`` asks ``questions[(i + j) % len]``, streamed when ``i + j`` is
    odd. Returns ``(results, errors)``: ``(question, text, verdict)`` per answered request and
    one line per failed one (collected, so an assertion can show every one).
    """
    import httpx

    results: list[tuple[str, str, dict]] = []
    errors: list[str] = []

    def client_loop(i: int) -> None:
        with httpx.Client(timeout=300) as client:
            for j in range(requests):
                q = questions[(i + j) % len(questions)]
                try:
                    results.append((q, *ask(client, url, q, stream=(i + j) % 2 == 1, max_tokens=max_tokens)))
                except Exception as exc:  # noqa: BLE001 - reported by the caller's assertion
                    errors.append(f"{q}: {exc!r}")

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_serving(config: Any, settings: Any, *, replicas: int = 2, timeout: float = 600) -> Iterator[str]:
    """``run_ray`` on a local loopback cluster in a thread; yields the HTTP base URL, stops it at exit."""
    from spill_guard.serving.ray_app import run_ray

    port = free_port()
    ready, stop, failure = threading.Event(), threading.Event(), []

    def serve_forever() -> None:
        try:
            run_ray(config, settings, host="127.0.0.1", port=port, replicas=replicas, num_cpus_per_replica=1,
                    ready=ready, stop=stop)
        except BaseException as exc:  # reported below, not lost in the thread
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=serve_forever, name="ray-serve-test", daemon=True)
    thread.start()
    try:
        assert ready.wait(timeout), f"the Ray Serve application did not start within {timeout} s"
        assert not failure, failure
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(180)


def running_replica_pids() -> list[int]:
    # From the Serve controller (the state API would need Ray's dashboard, which run_ray leaves off).
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    replicas = details["applications"]["spill-guard"]["deployments"]["SpillGuardServer"]["replicas"]
    return sorted(r["pid"] for r in replicas if r["state"] == "RUNNING" and r.get("pid"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # the cluster is local: the replica's pid is a process on this machine
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_replicas(count: int, timeout: float = 300, *, replacing: int | None = None) -> list[int]:
    """The pids of ``count`` RUNNING replicas, all alive; with ``replacing``, none of them that pid.

    The controller keeps listing a killed replica as RUNNING until its next health check, so a
    pid it reports is only taken once its process exists.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in running_replica_pids() if p != replacing and _alive(p)]
        if len(pids) == count:
            return pids
        time.sleep(1)
    raise AssertionError(f"{count} live replicas{'' if replacing is None else f' besides {replacing}'} "
                         f"were not running after {timeout} s")
