"""LlamaIndex integration of spill_guard (a separate distribution: the core never imports LlamaIndex).

from spill_guard_llama_index import SpillLLM, GuardedQueryEngine

llm = SpillLLM()                                     # embedded SmolLM2-135M-Instruct + packaged calibration
engine = GuardedQueryEngine(index.as_query_engine(llm=llm), llm)
response = engine.query("...")                       # response.metadata["spill_guard"]: the verdict

# or keep your own HuggingFaceLLM: every answer is scored from its raw logits
scorer = instrument(hf_llm, SpillGuard(spill_model))  # hf_llm uses spill_model.loaded.model
engine = GuardedQueryEngine(index.as_query_engine(llm=hf_llm), hf_llm, policy=Abstain())
"""

from spill_guard_llama_index._requires import INSTALL_HINT, require_llama_index

require_llama_index()

from spill_guard_llama_index.chat_engine import GuardedChatEngine  # noqa: E402
from spill_guard_llama_index.embedding import MiniLMEmbedding  # noqa: E402
from spill_guard_llama_index.enforce import METADATA_KEY  # noqa: E402
from spill_guard_llama_index.events import SpillScoredEvent  # noqa: E402
from spill_guard_llama_index.generation import Generation, collect  # noqa: E402
from spill_guard_llama_index.huggingface_llm import (  # noqa: E402
    HuggingFaceLLMScorer,
    SpillScoringWarning,
    instrument,
    scorer_of,
)
from spill_guard_llama_index.llm import SpillLLM  # noqa: E402
from spill_guard_llama_index.query_engine import GuardedQueryEngine, GuardedStreamingError  # noqa: E402
from spill_guard_llama_index.review_handler import SpillReviewHandler  # noqa: E402

__all__ = [
    "INSTALL_HINT",
    "METADATA_KEY",
    "Generation",
    "GuardedChatEngine",
    "GuardedQueryEngine",
    "GuardedStreamingError",
    "HuggingFaceLLMScorer",
    "MiniLMEmbedding",
    "SpillLLM",
    "SpillReviewHandler",
    "SpillScoredEvent",
    "SpillScoringWarning",
    "collect",
    "instrument",
    "scorer_of",
]
