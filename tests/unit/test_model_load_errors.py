"""Issue 11: corrupt model files raised raw ValueError / SafetensorError, and a hub id with no
reachable hub spent ~50 s in retries. Now: ModelLoadError naming the file, and a fast
ModelNotFoundError that says only the local hub cache was searched."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import threading

import pytest

from spill_guard.errors import ModelLoadError, ModelNotFoundError
from spill_guard.models import loader
from spill_guard.models.loader import hub_offline_reason, load_model


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """GGUF conversions of this test go to a throw-away cache."""
    monkeypatch.setenv("SPILL_GUARD_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_gguf_with_bad_magic_bytes_raises_model_load_error_naming_the_file(private_cache):
    bad = private_cache / "broken.gguf"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(ModelLoadError, match="broken.gguf") as info:
        load_model(bad, device="cpu")
    assert "download it again" in str(info.value)
    assert not list((private_cache / "cache" / "converted").glob(".tmp-*"))  # no half-written conversion left


def test_random_bytes_in_model_safetensors_raise_model_load_error_naming_the_file(tmp_path):
    from spill_guard.models.embedded import smollm2_gguf

    try:
        good = loader.converted_gguf(smollm2_gguf())  # cached by the session: no conversion here
    except ModelNotFoundError:
        pytest.skip("the embedded model is not installed")
    folder = tmp_path / "model"
    folder.mkdir()
    for f in good.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, folder / f.name)
    (folder / "model.safetensors").write_bytes(os.urandom(100_000))
    with pytest.raises(ModelLoadError, match="model.safetensors") as info:
        load_model(folder, device="cpu")
    assert "corrupt or truncated" in str(info.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_hub_makes_a_hub_id_fail_fast_with_model_not_found(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelNotFoundError, match="is unreachable, so only the local hub cache was searched") as info:
        load_model("no-such-org/no-such-model", device="cpu")
    assert "hub id on a machine with hub access" in str(info.value)  # the same advice as before


def test_hf_hub_offline_makes_a_hub_id_fail_fast_with_model_not_found(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline_reason() == "HF_HUB_OFFLINE is set"
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set"):
        load_model("no-such-org/no-such-model", device="cpu")


def test_reachable_hub_is_used_as_before(monkeypatch):
    """Any HTTP answer from the endpoint (here a loopback server) means online: no local-only mode."""
    from huggingface_hub import constants

    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        assert hub_offline_reason() == ""
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
