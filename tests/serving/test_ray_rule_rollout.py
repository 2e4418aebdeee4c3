"""A new calibration reaches every Ray Serve replica without a restart (``--watch-calibration``).

Two replicas on a local loopback cluster serve ``GuardConfig(calibration=FILE)`` with
``ServerSettings(watch_calibration_s=0.2)``: each replica watches the file. Rewriting it (as
``spill-guard calibrate -o FILE`` does, atomically) switches the rule: requests keep succeeding
throughout, and once the new version has been seen, a burst of concurrent requests (spread over both
replicas by Serve's router) all name it. The replicas are the same processes before and after: nothing
restarted.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from serving_support import MODEL, ray_serving, running_replica_pids, wait_for_replicas

pytestmark = pytest.mark.model
pytest.importorskip("ray.serve", reason="Ray Serve needs the ray extra: pip install 'spill-guard[ray]'")

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def _ask(client, url):
    reply = client.post(url + "/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "max_tokens": 4})
    return reply.status_code, reply.json()["choices"][0]["spill_guard"]["rule_version"] if reply.is_success else reply.text


def test_every_replica_takes_the_rewritten_calibration(spill_model, tmp_path):
    from spill_guard.calibration.packaged import packaged_calibration
    from spill_guard.serving import GuardConfig, ServerSettings

    a = packaged_calibration(spill_model)
    b = a.model_copy(update={"threshold": -100.0})
    path = tmp_path / "calibration.json"
    a.save(path)
    config = GuardConfig(device="cpu", calibration=str(path), log=str(tmp_path / "shared.jsonl"))
    settings = ServerSettings(max_batch=4, max_wait_ms=20, watch_calibration_s=0.2)
    with ray_serving(config, settings) as url, httpx.Client(timeout=300) as client:
        pids = wait_for_replicas(2)
        assert _ask(client, url) == (200, a.version)
        failures: list[object] = []
        stop = threading.Event()

        def background() -> None:  # load across the switch: no request may fail
            with httpx.Client(timeout=300) as own:
                while not stop.is_set():
                    status, body = _ask(own, url)
                    if status != 200:
                        failures.append(body)

        loader = threading.Thread(target=background)
        loader.start()
        try:
            b.save(path)
            deadline = time.monotonic() + 120
            while _ask(client, url)[1] != b.version:
                assert time.monotonic() < deadline, "no replica took the new calibration within 120 s"
            time.sleep(1.0)  # five polls: every replica has read the file by now

            def burst(_: int) -> tuple[int, str]:
                with httpx.Client(timeout=300) as own:
                    return _ask(own, url)

            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(burst, range(16)))
        finally:
            stop.set()
            loader.join(300)
        assert answers == [(200, b.version)] * 16
        assert not failures, failures
        assert running_replica_pids() == pids  # the same replicas: switched, not restarted
