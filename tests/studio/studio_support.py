"""Helpers of the studio tests: hand-built records, a real `spill-guard review serve` on loopback, a signed-in
HTTP client, and headless chromium through Selenium."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx

from spill_guard.review import ReviewRecord

ALICE = ("alice", "alice-token-0123456789")
BOB = ("bob", "bob-token-0123456789-b")
CAROL = ("carol", "carol-token-0123456789")
WORDS = ["The", " capital", " of", " France", " is", " Paris", ".", " It", " was", " 1969", " Apollo", " 11"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_records(n: int, *, seed: int = 0, start: datetime | None = None, hostile: dict | None = None) -> list[ReviewRecord]:
    """``n`` records as the guard writes them (tokens with per-token Δ, a span, a rule version), varied."""
    rng = random.Random(seed)
    start = start or datetime(2026, 11, 20, tzinfo=UTC)
    out = []
    for i in range(n):
        k = rng.randint(3, 10)
        tokens = [rng.choice(WORDS) for _ in range(k)]
        scores = [round(rng.gauss(0.0, 1.0), 4) for _ in range(k)]
        score = round(sum(scores) / k + rng.gauss(0, 0.3), 4)
        threshold = 0.2
        action = ("flagged" if score > threshold else "passed") if i % 7 else ("abstained" if score > threshold else "passed")
        fields = dict(
            created_at=(start + timedelta(hours=3 * i)).isoformat(timespec="microseconds"),
            question=f"Question number {i}: what is item {i}?",
            answer="".join(tokens) if action != "abstained" else "I don't know.",
            original_answer="".join(tokens),
            action=action,
            flagged=score > threshold,
            score=score,
            threshold=threshold,
            rule_version="cal-aaaaaaaaaaaa" if i % 3 else "threshold:0.2",
            spec="spilled_energy:mean",
            tokens=tokens,
            token_scores=scores,
            span={"start": 0, "end": len(tokens[0]), "text": tokens[0], "token_start": 0, "token_end": 1},
            model="model-a" if i % 2 else "model-b",
        )
        if hostile and i in hostile:
            fields.update(hostile[i])
        out.append(ReviewRecord(**fields))
    return out


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SPILL_GUARD_LOG", "SPILL_GUARD_REVIEWERS")}
    return subprocess.run([sys.executable, "-m", "spill_guard.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**env, "OMP_NUM_THREADS": "1"})


@contextlib.contextmanager
def running_studio(log: str, *extra: str, reviewers: tuple = (ALICE, BOB, CAROL), timeout: float = 120) -> Iterator[str]:
    """`spill-guard review serve --log LOG` on 127.0.0.1 (a real process); yields its base URL, stops it at exit."""
    port = free_port()
    argv = [sys.executable, "-m", "spill_guard.cli.main", "review", "serve", "--log", log, "--port", str(port)]
    for name, token in reviewers:
        argv += ["--reviewer", f"{name}={token}"]
    env = {k: v for k, v in os.environ.items() if k not in ("SPILL_GUARD_LOG", "SPILL_GUARD_REVIEWERS")}
    proc = subprocess.Popen([*argv, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**env, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the studio exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                if httpx.get(base + "/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the studio did not answer within the timeout"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(20)


def signed_in(base: str, token: str) -> tuple[httpx.Client, str]:
    """An HTTP client with a studio session (cookie) and that session's CSRF token."""
    client = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
    form = client.get("/login").text
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)
    done = client.post("/login", data={"login_csrf": nonce, "token": token})
    assert done.status_code == 303, done.text
    page = client.get("/").text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)
    return client, csrf


def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        import pytest

        pytest.fail("chromium and chromedriver are needed (make test installs them: apt-get install chromium "
                    "chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
