"""``spill-guard score`` end to end: the JSON contract and the exit codes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from spill_guard.report import ScoredAnswer

pytestmark = pytest.mark.model


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spill_guard.cli.main", *args], capture_output=True, text=True, timeout=300
    )


def test_score_json_contract_matches_spec(spill_model):
    proc = run_cli("score", "What is the capital of France?", "--json", "--max-new-tokens", "24")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["schema_version"] == 1
    n = len(out["answer_ids"])
    for key in ("token_energy", "marginal_energy", "spilled_energy", "tokens"):
        assert len(out[key]) == n
    im_end = spill_model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert out["answer_ids"][-1] == im_end and out["stopped_on_eos"]
    # prompt_ids are exactly what the library feeds the model for this question
    assert out["prompt_ids"] == spill_model.prompt_ids("What is the capital of France?")
    # SPEC §1 identities at β = 1: Δ_t = E_t - F_{t+1}
    e, f, d = out["token_energy"], out["marginal_energy"], out["spilled_energy"]
    for t in range(n - 1):
        assert d[t] == pytest.approx(e[t] - f[t + 1], abs=1e-4)
    start, end = ScoredAnswer.model_validate(out).text_range()  # pooled reads the answer's text, not <|im_end|>
    assert end == n - 1 and out["pooled"]["spilled_energy:min"] == pytest.approx(min(d[start:end]), abs=1e-5)
    assert all(math.isfinite(v) for v in e + f + d)


def test_score_table_and_teacher_forced_answer():
    proc = run_cli("score", "What is 2 + 2?", "--answer", "4")
    assert proc.returncode == 0, proc.stderr
    assert "answer: 4" in proc.stdout and "spilled_energy:min" in proc.stdout and "g_nll" in proc.stdout
    assert "spilled_energy:mean" in proc.stdout and "(default)" in proc.stdout
    assert "max-new-tokens" not in proc.stdout  # a given answer was not generated


@pytest.mark.parametrize(
    "args,needle",
    [
        (["score", ""], "question is empty"),
        (["score", "hi", "--beta", "0"], "beta must be"),
        (["score", "hi", "--model", "/no/such/model"], "does not exist"),
        (["score", "hi", "--max-new-tokens", "0"], "max_new_tokens"),
    ],
)
def test_bad_input_exit_code_2_with_message(args, needle):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
