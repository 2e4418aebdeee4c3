"""`spill-guard serve` checks its arguments before loading any model, and names the extra when it is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv, says", [
    (["--max-batch", "0"], "max-batch must be an integer >= 1"),
    (["--max-wait-ms", "-5"], "max-wait-ms must be between 0 and 10000"),
    (["--calibration", "/no/such/calibration.json"], "does not exist"),
    (["--log", "review.txt"], "must end in .jsonl"),
    (["--log", "http://logs.example/review"], "or be a postgresql:// URL"),  # a URL no sink opens
    (["--no-guard", "--policy", "abstain"], "--no-guard serves without scoring"),
    (["--api-key", "short"], "at least 8 characters"),
    (["--default-max-tokens", "600"], "exceeds max-tokens-limit"),
    (["--port", "70000"], "--port must be between"),
    (["--redact"], "--redact applies to the review log"),
    (["--admin-key", "short"], "admin key must be at least 8 characters"),
    (["--api-key", "same-key-0123", "--admin-key", "same-key-0123"], "must differ from the API key"),
    (["--watch-calibration", "5"], "watches the server's calibration file"),
    (["--watch-calibration", "0"], "between 0.05 and 3600"),
])
def test_bad_arguments_exit_2_before_loading(argv, says, capsys, monkeypatch):
    from spill_guard.cli.main import main
    from spill_guard.spill_model import SpillModel

    monkeypatch.setattr(SpillModel, "load", classmethod(lambda cls, *a, **k: pytest.fail("model loaded")))
    assert main(["serve", *argv]) == 2
    assert says in capsys.readouterr().err


def test_missing_extra_names_the_install_command():
    code = ("import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None\n"
            "from spill_guard.cli.main import main; sys.exit(main(['serve']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "pip install 'spill-guard[serve]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_help_lists_the_options():
    done = subprocess.run([sys.executable, "-m", "spill_guard.cli.main", "serve", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0
    for option in ("--model", "--calibration", "--policy", "--log", "--host", "--port", "--api-key", "--max-batch",
                   "--max-wait-ms", "--max-tokens-limit", "--no-guard"):
        assert option in done.stdout
