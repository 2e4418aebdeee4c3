"""The ``spill_guard`` object on every choice: the guard's verdict as a documented JSON contract.

docs/serving.md lists every field. When the guard withholds the answer (abstained, raised),
nothing that would reveal it goes out: no token texts, no span text. The original answer
stays in the review log, under ``record_id``.
"""

from __future__ import annotations

from typing import Any

from spill_guard.policy.base import Action

#: Actions whose original answer the client must not see.
HIDDEN = (Action.ABSTAINED, Action.RAISED)


def verdict_object(verdict: Any, *, stop_sequence: str | None, token_scores: bool) -> dict[str, Any]:
    """The choice's ``spill_guard`` object for a :class:`~spill_guard.guard.Verdict`."""
    hidden = verdict.action in HIDDEN
    span = None
    if verdict.span is not None:
        span = verdict.span.model_dump()
        if hidden:
            span["text"] = None
    out: dict[str, Any] = {
        "action": verdict.action.value,
        "flagged": verdict.flagged,
        "score": _finite(verdict.score),
        "threshold": verdict.threshold,
        "rule_version": verdict.rule_version,
        "spec": verdict.spec,
        "locator": verdict.locator,
        "span": span,
        "reason": verdict.reason,
        "record_id": verdict.record_id,
        "model": verdict.model,
        "early_stopped": verdict.early_stopped,
        "stop_sequence": stop_sequence,
        "attempts": [
            {"score": _finite(a.score), "flagged": a.flagged, "strategy": a.strategy, "reason": a.reason}
            for a in verdict.attempts
        ],
        "second_opinion": _second_opinion(verdict.second_opinion, hidden),
    }
    if token_scores:
        out["token_scores"] = token_entries(verdict.scored, hidden=hidden)
    return out


def token_entries(scored: Any, *, hidden: bool) -> list[dict[str, Any]]:
    """Per answer token: index, id, text (unless hidden) and its energies E_t, F_t, Δ_t."""
    if scored is None:
        return []
    entries = []
    for i, token in enumerate(scored.tokens):
        entries.append(
            {
                "index": i,
                "token_id": token.id,
                "token": None if hidden else (token.literal if token.special else token.text),
                "token_energy": _finite(scored.token_energy[i]),
                "marginal_energy": _finite(scored.marginal_energy[i]),
                "spilled_energy": _finite(scored.spilled_energy[i]),
            }
        )
    return entries


def stream_token_object(token: Any, *, hidden: bool) -> dict[str, Any]:
    """``spill_guard.token`` of a streamed chunk: that token's energies as soon as Δ is known."""
    return {
        "index": token.index,
        "token_id": token.token_id,
        "token": None if hidden else token.text,
        "token_energy": _finite(token.token_energy),
        "marginal_energy": _finite(token.marginal_energy),
        "spilled_energy": _finite(token.spilled_energy),
    }


def _finite(value: float | None) -> float | None:
    """Strict JSON has no NaN/inf: such values go out as ``null``."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


def _second_opinion(opinion: Any, hidden: bool) -> dict[str, Any] | None:
    """The second opinion's numbers; its sampled answers only when the answer itself may be shown."""
    if opinion is None:
        return None
    out = opinion.model_dump(mode="json")
    out["one_pass_risk"], out["risk"] = _finite(opinion.one_pass_risk), _finite(opinion.risk)
    if hidden:
        out["answers"] = [{"risk": _finite(a.risk), "agrees": a.agrees} for a in opinion.answers]
    return out
