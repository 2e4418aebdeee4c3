"""The spill report a :class:`SpillChatModel` attaches to each answer, and how to read it back.

Where it lives:

- ``message.response_metadata["spill_guard"]``: a JSON-ready dict (``REPORT_KEY``) with the
  verdict (action, flagged, score, threshold, span, per-token Δ, reason), every pooled
  catalogue score, and the per-token ``E``/``F``/``Δ`` lists of the whole answer;
- ``generation.generation_info["spill_verdict"]``: the live :class:`~spill_guard.Verdict`
  (with ``.scored``, the :class:`~spill_guard.ScoredAnswer` and its trace), for callbacks
  and wrappers in the same process (``VERDICT_KEY``);
- while streaming, each chunk's ``response_metadata["spill_tokens"]`` (``TOKENS_KEY``) holds a
  one-element list with that token's energies; LangChain concatenates lists when it merges
  chunks, so the aggregated message has the whole per-token list, and its last chunk carries
  the full report.
"""

from __future__ import annotations

from typing import Any

from spill_guard import ScoredAnswer
from spill_guard.guard.verdict import TokenEvent, Verdict

REPORT_KEY = "spill_guard"
TOKENS_KEY = "spill_tokens"
VERDICT_KEY = "spill_verdict"
REPORT_VERSION = 1


def build_report(verdict: Verdict, scored: ScoredAnswer, *, stop_sequence: str | None = None) -> dict[str, Any]:
    """JSON-ready report of one answer: the verdict plus the scores behind it."""
    return {
        "report_version": REPORT_VERSION,
        "verdict": verdict.model_dump(mode="json"),
        "pooled": {name: _finite(value) for name, value in scored.pooled.items()},
        "default_score": scored.default_score,
        "token_ids": list(scored.answer_ids),
        "tokens": [t.text for t in scored.tokens],
        "token_energy": [_finite(v) for v in scored.token_energy],
        "marginal_energy": [_finite(v) for v in scored.marginal_energy],
        "spilled_energy": [_finite(v) for v in scored.spilled_energy],
        "prompt_tokens": len(scored.prompt_ids),
        "stopped_on_eos": scored.stopped_on_eos,
        "stop_sequence": stop_sequence,
        "model": scored.model,
    }


def token_entry(event: TokenEvent) -> dict[str, Any]:
    """One streamed token's energies. No ``index`` key: LangChain would merge list items by it."""
    return {
        "position": event.index,
        "token_id": event.token_id,
        "text": event.text,
        "token_energy": _finite(event.token_energy),
        "marginal_energy": _finite(event.marginal_energy),
        "spilled_energy": _finite(event.spilled_energy),
    }


def spill_report(source: Any) -> dict[str, Any] | None:
    """The report attached to a message, a generation or a chat result (``None`` if absent).

    Accepts an ``AIMessage``/``AIMessageChunk``, a ``ChatGeneration``, or anything with a
    ``response_metadata`` or ``message`` attribute.
    """
    message = getattr(source, "message", source)
    metadata = getattr(message, "response_metadata", None)
    if isinstance(metadata, dict) and isinstance(metadata.get(REPORT_KEY), dict):
        return metadata[REPORT_KEY]
    return None


def verdict_of(source: Any) -> Verdict | None:
    """The :class:`Verdict` of a message or generation.

    A generation from this process gives the live object (with ``.scored``); a message,
    e.g. after a round trip through JSON, gives one rebuilt from its report (``.scored`` is
    then ``None``).
    """
    info = getattr(source, "generation_info", None)
    if isinstance(info, dict) and isinstance(info.get(VERDICT_KEY), Verdict):
        return info[VERDICT_KEY]
    report = spill_report(source)
    if report is None:
        return None
    return Verdict.model_validate(report["verdict"])


def _finite(value: float) -> float | None:
    """Strict JSON has no NaN/inf: such values (e.g. E = +inf on a masked token) become None."""
    value = float(value)
    return value if value == value and value not in (float("inf"), float("-inf")) else None
