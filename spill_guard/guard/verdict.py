"""What the guard returns: a :class:`Verdict` per question, and streamed :class:`TokenEvent` s.

Both are pydantic models so they serialise to JSON (``model_dump(mode="json")``) for logs,
HTTP responses and framework metadata. ``score`` and ``threshold`` are in risk units:
higher = riskier, flag when ``score > threshold``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from spill_guard.errors import SpillGuardError
from spill_guard.policy.base import Action
from spill_guard.report import ScoredAnswer


class AnswerSpan(BaseModel):
    """Where the exact answer sits: characters ``[start, end)`` and answer tokens ``[token_start, token_end)``."""

    start: int
    end: int
    text: str
    token_start: int
    token_end: int


class Attempt(BaseModel):
    """One answer the guard tried (the first, then any retries)."""

    model_config = ConfigDict(ser_json_inf_nan="null")

    answer: str
    score: float | None
    flagged: bool
    strategy: str
    reason: str = ""
    prompt_ids: list[int] = Field(
        default_factory=list, description="the token ids this attempt's answer was generated from"
    )


class SampledAnswer(BaseModel):
    """One answer a second opinion drew: its text, its located span, its own one-pass risk, and
    whether it says what the first answer says."""

    answer: str
    span: str | None
    risk: float | None
    agrees: bool


class SecondOpinion(BaseModel):
    """What sampling said about the first answer (see :class:`~spill_guard.calibration.consistency.Consistency`):
    ``agreement`` of its ``samples`` with it, and the risk before (``one_pass_risk``) and after (``risk``)."""

    model_config = ConfigDict(ser_json_inf_nan="null")

    samples: int
    agreement: float
    one_pass_risk: float
    risk: float
    band: tuple[float, float]
    weight: float
    answers: list[SampledAnswer] = Field(default_factory=list)


class Verdict(BaseModel):
    """The guard's decision on one question.

    ``answer`` is what the end user should see (the abstention reply when the guard
    abstained); ``original_answer`` is the model's answer that was scored (the lowest-risk
    one after retries). ``scored`` holds the full :class:`~spill_guard.ScoredAnswer`
    (per-token values, trace) and is left out of ``model_dump``; use ``scored.to_record()``.
    """

    model_config = ConfigDict(ser_json_inf_nan="null", protected_namespaces=())

    question: str
    context: str | None = None
    answer: str
    original_answer: str
    action: Action
    flagged: bool
    score: float | None = Field(description="risk score of original_answer, higher = riskier; None if unscorable")
    threshold: float
    rule_version: str | None = Field(
        default=None, description='the rule that judged it: a calibration version ("cal-...") or "threshold:<value>"'
    )
    reason: str = Field(description="why the answer was or was not flagged, in words")
    spec: str
    locator: str
    model: str
    span: AnswerSpan | None = None
    tokens: list[str] = Field(default_factory=list, description="text of each answer token")
    token_scores: list[float | None] = Field(default_factory=list, description="per-token spilled energy Δ_t")
    attempts: list[Attempt] = Field(default_factory=list)
    early_stopped: bool = False
    second_opinion: SecondOpinion | None = Field(
        default=None, description="sampled consistency of the first answer, when one pass was unsure"
    )
    record_id: str | None = Field(default=None, description="id of this verdict's record in the review log")

    _scored: ScoredAnswer | None = PrivateAttr(default=None)

    @property
    def scored(self) -> ScoredAnswer | None:
        """The chosen answer's full :class:`~spill_guard.ScoredAnswer` (None once loaded from JSON)."""
        return self._scored

    @property
    def abstained(self) -> bool:
        return self.action is Action.ABSTAINED


class TokenEvent(BaseModel):
    """One generated token, streamed as soon as its spilled energy is known.

    Δ_t needs the logits *after* reading token ``t``, so each event arrives one forward
    step after its token was chosen (the last one after the extra final step).
    """

    model_config = ConfigDict(ser_json_inf_nan="null")

    index: int = Field(description="position of the token in the answer, 0-based")
    token_id: int
    text: str = Field(description="new answer text this token completes ('' while a multi-byte character is split)")
    token_energy: float = Field(description="E_t = -β z_t[x_t]")
    marginal_energy: float = Field(description="F_t = -logsumexp(β z_t)")
    spilled_energy: float = Field(description="Δ_t = logsumexp(β z_{t+1}) - β z_t[x_t]")


class HallucinationDetected(SpillGuardError):
    """Raised under the ``Raise()`` policy, after the verdict was logged.

    Fields: ``verdict`` (the raised one), ``verdicts`` (every verdict of the call, in order:
    one for ``ask``, the whole batch for ``ask_batch``), and the raised verdict's ``question``,
    ``answer`` (the model's), ``score`` (None if unscorable), ``threshold``, ``spec``,
    ``reason`` and ``record_id``. ``summary`` is the one-sentence finding (what the server
    returns as its error message).
    """

    def __init__(self, verdict: Verdict, *, verdicts: list[Verdict] | None = None):
        self.verdict = verdict
        self.verdicts = list(verdicts) if verdicts is not None else [verdict]
        self.question = verdict.question
        self.answer = verdict.original_answer
        self.score = verdict.score
        self.threshold = verdict.threshold
        self.spec = verdict.spec
        self.reason = verdict.reason
        self.record_id = verdict.record_id
        super().__init__(
            f"{self.summary} The verdict is on this exception's .verdict; use Flag() or Abstain() to get it "
            "without an exception."
        )

    @property
    def summary(self) -> str:
        score = "unscorable" if self.score is None else f"{self.score:.3f}"
        return (
            f"answer to {self.question!r} flagged as a likely hallucination ({self.reason}; "
            f"{self.spec} risk {score} vs threshold {self.threshold:.3f})."
        )


class VerdictNotLoggedError(SpillGuardError, RuntimeError):
    """The guard decided, but writing the review record failed (read-only log, full disk ...).

    ``.verdict`` is the verdict that was not logged (its ``record_id`` is ``None``); after
    :meth:`SpillGuard.ask_batch`, ``.verdicts`` holds every verdict of the batch, logged or
    not, in order. The sink's exception is chained as ``__cause__``. Pass
    ``SpillGuard(..., on_log_error="warn")`` to get the verdicts back with a warning instead.
    """

    def __init__(self, verdict: Verdict, cause: BaseException, *, verdicts: list[Verdict] | None = None):
        self.verdict = verdict
        self.verdicts = verdicts if verdicts is not None else [verdict]
        self.cause = cause
        unlogged = sum(v.record_id is None for v in self.verdicts)
        super().__init__(
            f"the review log could not record the verdict on {verdict.question!r} ({type(cause).__name__}: {cause}); "
            f"{unlogged} of {len(self.verdicts)} verdict(s) unlogged. The decided verdicts are on this exception's "
            ".verdict / .verdicts; fix the log (permissions, free space, metadata that is not JSON/UTF-8) or pass "
            "on_log_error='warn' to continue without logging."
        )


class VerdictNotLoggedWarning(UserWarning):
    """Warned (with ``on_log_error="warn"``) when a verdict is returned without its review record."""


def attach_scored(verdict: Verdict, scored: ScoredAnswer | None) -> Verdict:
    verdict._scored = scored
    return verdict
