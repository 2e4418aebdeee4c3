"""``ScoredAnswer``: the public result of scoring one answer (a versioned JSON contract).

It carries the exact prompt ids, the generated ids, the decoded answer, each token's text
and character offsets in that answer, the per-token ``E``, ``F``, ``Δ`` at the chosen β,
and every catalogue score pooled over the answer's text (the span the guard's default
``full`` locator finds: the end-of-turn token, which adds no text, is left out). The
underlying :class:`~spill_guard.capture.TokenTrace` stays attached (not serialised) so any
other scorer, pooling or token range can be computed later without touching the model.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from spill_guard.capture.token_offsets import token_char_spans
from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import InvalidInputError, SpillGuardError
from spill_guard.scoring.energy import MarginalEnergy, SpilledEnergy, TokenEnergy
from spill_guard.scoring.specs import DEFAULT_SPEC, ScoreSpec, pooled_catalogue
from spill_guard.spans import locate_tokens, make_locator

SCHEMA_VERSION = 1

#: The span ``ScoredAnswer.score()`` and ``pooled`` read by default: the guard's default
#: locator (the answer's text, whitespace-stripped; textless special tokens left out).
DEFAULT_LOCATOR = "full"


class TokenRecord(BaseModel):
    """One answer token: its id, ``text == answer[start:end]``, and whether it is special.

    Special tokens (end-of-turn, EOS) add no text, so their span is empty; ``literal`` keeps
    their vocabulary form (e.g. ``<|im_end|>``) for display.
    """

    id: int
    text: str
    start: int
    end: int
    special: bool = False
    literal: str | None = None


class ScoredAnswer(BaseModel):
    """Scores of one answer. Per-token lists are aligned with ``answer_ids``; higher = riskier.

    Non-finite numbers (e.g. ``E = +inf`` for a token the model had masked, or the ``Δ`` of a
    last stop token whose ``z_(T+1)`` step was skipped) serialise as ``null`` in JSON, and a
    ``null`` in these lists reads back as NaN, so :meth:`from_record` accepts every record
    :meth:`to_record` writes.
    """

    model_config = ConfigDict(ser_json_inf_nan="null", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    model: str
    beta: float = 1.0
    prompt: str
    prompt_ids: list[int]
    answer: str
    answer_ids: list[int]
    stopped_on_eos: bool = Field(description="True if generation ended on a stop token (included in answer_ids)")
    tokens: list[TokenRecord]
    token_energy: list[float] = Field(description="E_t = -β z_t[x_t]")
    marginal_energy: list[float] = Field(description="F_t = -logsumexp(β z_t)")
    spilled_energy: list[float] = Field(description="Δ_t = logsumexp(β z_{t+1}) - β z_t[x_t]")
    pooled: dict[str, float] = Field(
        description="catalogue scores over the answer's text (the guard's default 'full' span), by spec name"
    )
    default_score: str = DEFAULT_SPEC.name
    nonfinite_steps: list[int] = Field(default_factory=list, description="steps with NaN/+inf logits")

    _trace: TokenTrace | None = PrivateAttr(default=None)

    @field_validator("token_energy", "marginal_energy", "spilled_energy", mode="before")
    @classmethod
    def _null_as_nan(cls, values: Any) -> Any:
        """``null`` (how JSON writes NaN/±inf) reads back as NaN: the value is undefined, not missing."""
        if isinstance(values, (list, tuple)):
            return [math.nan if v is None else v for v in values]
        return values

    @property
    def trace(self) -> TokenTrace:
        if self._trace is None:
            raise SpillGuardError("this ScoredAnswer was loaded from JSON and has no trace; re-score the answer.")
        return self._trace

    def score(self, spec: ScoreSpec | str = DEFAULT_SPEC, start: int | None = None, end: int | None = None) -> float:
        """Pooled score of ``spec`` over answer tokens ``[start, end)``; higher = riskier.

        With no range, the tokens of the answer's text (:meth:`text_range`): the span the
        guard pools over by default, so ``ans.score()`` is the number a default
        ``SpillGuard`` compares with its threshold. The end-of-turn token, which adds no
        text, is left out; pass ``0, len(ans.answer_ids)`` to pool over every generated
        token. With only one bound given, the other is the answer's first/last token.
        """
        spec = ScoreSpec.parse(spec) if isinstance(spec, str) else spec
        if spec.beta not in self.trace.betas:
            raise InvalidInputError(f"beta {spec.beta} was not captured; capture betas were {list(self.trace.betas)}.")
        if start is None and end is None:
            start, end = self.text_range()
        return spec.score(self.trace, start, end)

    def text_range(self) -> tuple[int, int]:
        """Token range ``[start, end)`` of the answer's text: what the ``full`` locator finds.

        The same span the guard scores with its default locator (leading/trailing whitespace
        and textless special tokens such as ``<|im_end|>`` left out). Raises
        :class:`InvalidInputError` when the answer has no text.
        """
        found = locate_tokens(self, make_locator(DEFAULT_LOCATOR))
        if found is None:
            raise InvalidInputError(
                f"the answer {self.answer!r} has no text (empty or whitespace only), so there is no span to "
                f"score by default; pass a token range, e.g. score(spec, 0, {len(self.answer_ids)}) for every token."
            )
        return found

    def to_record(self) -> dict:
        """JSON-ready dict of the contract *plus* the trace, so scores can be recomputed later."""
        return {**self.model_dump(mode="json"), "trace": self.trace.to_dict()}

    @classmethod
    def from_record(cls, record: dict) -> ScoredAnswer:
        """Inverse of :meth:`to_record` (the trace is re-attached)."""
        data = dict(record)
        trace = TokenTrace.from_dict(data.pop("trace"))
        result = cls.model_validate(data)
        result._trace = trace
        return result

    def table(self) -> str:
        """A plain-text per-token table (token, E, F, Δ) for terminals."""
        lines = [f"{'#':>3}  {'token':<16} {'E':>9} {'F':>9} {'Δ':>9}"]
        for i, tok in enumerate(self.tokens):
            shown = tok.literal or repr(tok.text)[1:-1]
            lines.append(
                f"{i:>3}  {shown[:16]:<16} {self.token_energy[i]:>9.3f} "
                f"{self.marginal_energy[i]:>9.3f} {self.spilled_energy[i]:>9.3f}"
            )
        return "\n".join(lines)


def build_scored_answer(
    *,
    tokenizer: Any,
    model_name: str,
    prompt_ids: list[int],
    trace: TokenTrace,
    stopped_on_eos: bool,
    beta: float = 1.0,
) -> ScoredAnswer:
    """Assemble a :class:`ScoredAnswer` from a trace (offsets from the generated ids)."""
    answer_ids = [int(i) for i in trace.token_ids]
    text, spans, pieces = token_char_spans(tokenizer, answer_ids)
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    tokens = [
        TokenRecord(
            id=i,
            text=p,
            start=s,
            end=e,
            special=i in special,
            literal=tokenizer.convert_ids_to_tokens(i) if i in special else None,
        )
        for i, p, (s, e) in zip(answer_ids, pieces, spans)
    ]
    nonfinite = [int(i) for i in trace.nonfinite.nonzero()[0]]
    if nonfinite:
        warnings.warn(
            f"model produced NaN/+inf logits at answer steps {nonfinite}; pooled scores are left out.",
            RuntimeWarning,
            stacklevel=2,
        )

    def as_list(values: Any) -> list[float]:
        return [float(v) for v in values]

    result = ScoredAnswer(
        model=model_name,
        beta=beta,
        prompt=tokenizer.decode(prompt_ids, skip_special_tokens=False),
        prompt_ids=[int(i) for i in prompt_ids],
        answer=text,
        answer_ids=answer_ids,
        stopped_on_eos=stopped_on_eos,
        tokens=tokens,
        token_energy=as_list(TokenEnergy(beta=beta)(trace)),
        marginal_energy=as_list(MarginalEnergy(beta=beta)(trace)),
        spilled_energy=as_list(SpilledEnergy(beta=beta)(trace)),
        pooled={},
        nonfinite_steps=nonfinite,
    )
    result._trace = trace
    if not nonfinite:
        try:
            start, end = result.text_range()  # the span score() reads by default
        except InvalidInputError:
            return result  # no text: no span, so no catalogue score is defined
        result.pooled = pooled_catalogue(trace, start, end)
    return result
