"""SIGKILL the server (a subprocess: `python -m spill_guard.cli.main serve`) under load, restart it.

The review log reads back, every answer a client received is in it, only requests in
flight failed, and they failed visibly (a transport error or a cut stream, never a
silent success); the restarted server appends to the same log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from serving_support import MODEL

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 4
ANSWERS_BEFORE_KILL = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log: Path, out: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "SPILL_GUARD_API_KEY"}
    cmd = [sys.executable, "-m", "spill_guard.cli.main", "serve", "--device", "cpu", "--port", str(port),
           "--log", str(log), "--max-batch", "4", "--max-wait-ms", "20", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {out.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("server did not become ready")


def ask(client: httpx.Client, url: str, question: str, stream: bool) -> str:
    """The record id of a complete answer; raises on anything incomplete."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 12, "stream": stream}
    if not stream:
        resp = client.post(url, json=body)
        resp.raise_for_status()
        return resp.json()["choices"][0]["spill_guard"]["record_id"]
    record, done = None, False
    with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                choice = json.loads(line[6:])["choices"][0]
                if choice["finish_reason"] is not None:
                    record = choice["spill_guard"]["record_id"]
    if not done or record is None:
        raise AssertionError("stream ended without its verdict and [DONE]")
    return record


def test_sigkill_under_load_then_restart(tmp_path):
    from spill_guard.review import open_log

    port, log, out = free_port(), tmp_path / "review.jsonl", tmp_path / "server.out"
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    proc = start_server(port, log, out)
    answered: list[str] = []
    failed: list[BaseException] = []
    stop = threading.Event()
    try:
        def client_loop(i: int) -> None:
            with httpx.Client(timeout=300) as client:
                n = 0
                while not stop.is_set():
                    try:
                        answered.append(ask(client, url, f"What is {i} + {n}?", stream=i % 2 == 1))
                    except Exception as exc:  # the kill: this request was in flight (or sent after it)
                        failed.append(exc)
                        return
                    n += 1

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 600
        while len(answered) < ANSWERS_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(answered) >= ANSWERS_BEFORE_KILL, f"too few answers before the kill: {out.read_text()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        for t in threads:
            t.join(timeout=300)
        stop.set()
        # Every client saw its in-flight request fail, and saw it as an error.
        assert 1 <= len(failed) <= CLIENTS
        assert all(isinstance(e, (httpx.TransportError, AssertionError)) for e in failed), failed

        proc = start_server(port, log, out)
        with open_log(log) as sink:
            before = {r.id for r in sink.records()}
        assert set(answered) <= before  # every answer a client got was logged before it was sent
        assert len(before) <= len(answered) + len(failed)  # at most the in-flight ones besides
        with httpx.Client(timeout=300) as client:
            after_restart = ask(client, url, "What is 1 + 1?", stream=False)
        with open_log(log) as sink:
            records = {r.id for r in sink.records()}
        assert records == before | {after_restart}
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
