"""The README's server section: its curl command and its openai snippet run against a real server."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from serving_support import guarded_app, running

pytestmark = pytest.mark.model

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## OpenAI-compatible server")
    return text[start : text.index("\n## ", start + 3)]


@pytest.fixture(scope="module")
def server(spill_model):
    from spill_guard.policy import Abstain

    with running(guarded_app(spill_model, policy=Abstain())) as srv:
        yield srv


def test_readme_curl_example(server):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    [command] = [b for b in re.findall(r"```bash\n(.*?)```", section(), re.S) if "curl" in b]
    command = command.replace("http://127.0.0.1:8000", server.url)
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    choice = body["choices"][0]
    assert choice["spill_guard"]["action"] in ("passed", "abstained")
    assert choice["message"]["content"]


def test_readme_openai_example(server):
    [code] = re.findall(r"```py\n(.*?)```", section(), re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("http://127.0.0.1:8000", server.url), "README serve example", "exec"), {})
    first, second = out.getvalue().strip().splitlines()
    assert first.split(" | ")[1].split()[0] in ("passed", "abstained") and "risk" in first
    assert len([float(v) for v in second.split()]) >= 2  # one Δ per streamed token
