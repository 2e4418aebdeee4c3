"""LangChain integration of spill_guard.

- :class:`SpillChatModel`: a LangChain chat model over a local model that reports, with every
  answer, its spilled-energy scores, the answer span, per-token energies and a verdict
  (``message.response_metadata["spill_guard"]``), and streams per-token energies.
- :class:`SpillCallbackHandler`: reads those reports from any run, counts them and writes
  flagged answers to a review log; with ``model=`` an unmodified ``ChatHuggingFace`` /
  ``HuggingFacePipeline``, it scores that model's answers itself (drop-in).
- :class:`SpillGuardedRunnable`: wraps a chain so a policy (flag / retry / abstain / raise)
  applies to its output.
- :class:`SpillGuardMiddleware` (needs ``langchain`` v1): the same policy inside an agent.

The core ``spill_guard`` package never imports LangChain; this package needs ``langchain-core``.
"""

from __future__ import annotations

from spill_guard_langchain._requirements import require_langchain_core

require_langchain_core()  # a clear ImportError naming the package to install, before anything else

from spill_guard_langchain.callbacks import SpillCallbackHandler, UnscoredRunWarning  # noqa: E402
from spill_guard_langchain.chat_model import SpillChatModel  # noqa: E402
from spill_guard_langchain.guarded import GuardedOutput, SpillGuardedRunnable  # noqa: E402
from spill_guard_langchain.report import REPORT_KEY, TOKENS_KEY, spill_report, verdict_of  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str):  # the middleware needs the optional `langchain` package: import it on use
    if name == "SpillGuardMiddleware":
        from spill_guard_langchain.middleware import SpillGuardMiddleware

        return SpillGuardMiddleware
    raise AttributeError(f"module 'spill_guard_langchain' has no attribute {name!r}")


__all__ = [
    "GuardedOutput",
    "REPORT_KEY",
    "SpillCallbackHandler",
    "SpillChatModel",
    "SpillGuardMiddleware",
    "SpillGuardedRunnable",
    "TOKENS_KEY",
    "UnscoredRunWarning",
    "__version__",
    "spill_report",
    "verdict_of",
]
