"""Issue 19, item 5: `spill-guard serve --calibration FILE` with an unusable file never leaves a server
that can never be ready. The file's contents are checked before the model loads (exit 2, the message
names the file and the problem); what only the loaded model can show (another model's file) ends the
process with the reason, under uvicorn and on Ray Serve. The real CLI runs as a subprocess here,
bound to 127.0.0.1 and to a time limit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from serving_support import free_port, running

pytestmark = pytest.mark.model


def packaged() -> dict:
    from spill_guard.calibration import default_calibration

    return json.loads(default_calibration("smollm2-135m-instruct").to_json())


def write(tmp_path, name: str, data: dict | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    return str(path)


def serve(*argv: str, timeout: float) -> subprocess.CompletedProcess:
    """The real ``spill-guard serve`` on a free loopback port; the test fails if it is still up after ``timeout``."""
    command = [sys.executable, "-m", "spill_guard.cli.main", "serve", "--host", "127.0.0.1",
               "--port", str(free_port()), "--device", "cpu", *argv]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:  # the old behaviour: up forever, /readyz 503 model_load_failed
        pytest.fail(f"spill-guard serve {' '.join(argv)} was still running after {timeout} s: {exc.stderr!r}")


@pytest.mark.parametrize("name, change, says", [
    ("nan.json", {"threshold": float("nan")}, "threshold: value error, the threshold is NaN"),
    ("extra.json", {"surprise": 1}, "surprise: extra inputs are not permitted"),
    ("bytes.json", b'{"schema_version": 1, "model": "\xff\xfe"}', "is not UTF-8 text"),
    ("zero-beta.json", {"beta": 0.0}, "names an unusable score spec"),
])
def test_an_unusable_calibration_file_exits_2_before_the_model_loads(tmp_path, name, change, says):
    data = change if isinstance(change, bytes) else {**packaged(), **change}
    path = write(tmp_path, name, data)
    done = serve("--calibration", path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"calibration file {path!r}" in done.stderr and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert "Uvicorn running" not in done.stderr  # refused before the server started, so before the load


def test_calibration_and_threshold_together_exit_2_before_the_model_loads(tmp_path):
    done = serve("--calibration", write(tmp_path, "ok.json", packaged()), "--threshold", "0.3", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "not both" in done.stderr and "Uvicorn running" not in done.stderr


def other_models_file(tmp_path) -> str:
    data = packaged()
    data["model"] = "some-other-model"
    data.pop("model_fingerprint", None)  # a file that identifies its model by name only
    data["tokenizer"] = {**data["tokenizer"], "name_or_path": "some-other-model", "vocab_hash": "0123456789abcdef"}
    return write(tmp_path, "other-model.json", data)


def test_another_models_calibration_ends_the_server_with_the_reason(tmp_path):
    path = other_models_file(tmp_path)
    done = serve("--calibration", path, timeout=180)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: loading model 'smollm2-135m-instruct' with calibration file "
                           f"{path!r} failed, so the server stopped: CalibrationMismatchError"), last
    assert "does not match" in last and "some-other-model" in last
    assert "Traceback" not in done.stderr


def test_another_models_calibration_ends_serve_on_ray_with_the_reason(tmp_path):
    pytest.importorskip("ray.serve", reason="Ray Serve needs the ray extra: pip install 'spill-guard[ray]'")
    path = other_models_file(tmp_path)
    done = serve("--ray", "--calibration", path, timeout=480)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: loading model 'smollm2-135m-instruct' with calibration file "
                           f"{path!r} failed, so the server stopped: CalibrationMismatchError: the calibration"), last
    assert "some-other-model" in last


def test_a_calibration_at_another_beta_is_served(tmp_path):
    """A calibration fitted at β = 0.5 (`calibrate --spec spilled_energy:mean@0.5`) needs that β captured:
    the server used to load the model without it, so the load failed and /readyz said 503 forever."""
    from spill_guard.serving import GuardConfig, ServerSettings, create_app

    path = write(tmp_path, "beta.json", {**packaged(), "beta": 0.5})
    app = create_app(GuardConfig(device="cpu", calibration=path), ServerSettings())
    with running(app) as server:
        deadline, ready = time.monotonic() + 180, None
        while time.monotonic() < deadline:
            ready = httpx.get(server.url + "/readyz", timeout=30)
            if ready.status_code == 200 or ready.json()["error"]["code"] == "model_load_failed":
                break
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 200, ready.text
        body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "What is 2+2?"}],
                "max_tokens": 4}
        answer = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=120)
        assert answer.json()["choices"][0]["spill_guard"]["spec"] == "spilled_energy:mean@0.5"
