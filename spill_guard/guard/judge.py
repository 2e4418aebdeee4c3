"""The one decision path: a scored answer, a rule, a policy and a way to regenerate → a :class:`Verdict`.

Every door calls :meth:`Judge.decide` (the library guard, the server engine, the LangChain and
LlamaIndex classes): the first answer is assessed on its located span against the rule; the
policy decides; a retry asks the strategy for its attempt's prompt and params
(:meth:`~spill_guard.policy.strategies.Resample.next_attempt`) and the door's ``generate``
callable for the answer; the verdict is built once, here. Doors differ only in how they
generate, never in how they decide.

``generate(prompt, params) -> Generated`` is the door's part: run its backend on
``prompt.ids`` with ``params`` and return the scored answer (and whether an early stop cut it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spill_guard.calibration.consistency import Consistency
from spill_guard.errors import InvalidParameterError
from spill_guard.guard.assess import Assessed, assess
from spill_guard.guard.risk_rule import RiskRule
from spill_guard.guard.verdict import Attempt, SampledAnswer, SecondOpinion, Verdict, attach_scored
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import Prompt
from spill_guard.policy.base import Candidate, Decision, Policy, Regenerate, RetryStrategy, apply_policy
from spill_guard.report import ScoredAnswer
from spill_guard.spans import SpanLocator


@dataclass(frozen=True)
class Generated:
    """One generated answer as a door hands it to the judge."""

    scored: ScoredAnswer
    early_stopped: bool = False


#: A door's generation: ``generate(prompt, params)`` → the scored answer of ``prompt.ids``.
Generate = Callable[[Prompt, GenerationParams], Generated]
#: A door's batched generation of one prompt: ``generate_rows(prompt, [params, ...])`` → one answer per
#: params, in one call of a backend with :attr:`~spill_guard.backends.base.Capabilities.per_row_seeds` (each
#: row draws what ``generate(prompt, params)`` would draw alone).
GenerateRows = Callable[[Prompt, Sequence[GenerationParams]], list[Generated]]


class Judge:
    """A risk rule and an answer-span locator: what decides every answer, whatever the door.

    Args:
        rule: the calibrated (or fixed) :class:`RiskRule`.
        locator: where the exact answer is in an answer text.
        model: the model name verdicts carry.

    A rule with a second opinion (:attr:`RiskRule.second_opinion`): a first answer whose one-pass risk
    lies in its band is sampled again (through the door's ``generate``) and decided on the cascade's
    final risk.
    """

    def __init__(self, rule: RiskRule, locator: SpanLocator, model: str):
        self.rule = rule
        self.locator = locator
        self.model = model

    @property
    def second_opinion(self) -> Consistency | None:
        """The rule's second opinion (a :class:`Consistency` with its cascade), or None: one pass."""
        return self.rule.second_opinion

    def candidate(self, answer: Generated, question: str, *, strategy: str = "greedy") -> Candidate:
        """The policy candidate of one answer: its risk on the located span against the rule."""
        return assess(
            answer.scored, question, self.rule, self.locator, strategy=strategy, early_stopped=answer.early_stopped
        )

    def decide(
        self,
        first: Generated,
        *,
        policy: Policy,
        prompt: Prompt | None = None,
        params: GenerationParams | None = None,
        generate: Generate | None = None,
        generate_rows: GenerateRows | None = None,
        question: str | None = None,
        context: str | None = None,
        strategy: str | None = None,
        retry: bool = True,
        second_opinion: bool = True,
    ) -> Verdict:
        """Decide ``first`` (the answer to ``prompt`` made with ``params``) under ``policy``.

        ``generate`` makes a retry's answer and the second opinion's samples (it needs ``prompt`` and
        ``params``); ``None`` when none can be made, so a ``Retry`` falls back and an answer in the second
        opinion's band is decided on its one-pass risk (the reason says so). ``retry=False``: ``generate``
        only samples the second opinion (an answer produced elsewhere is judged, never replaced);
        ``second_opinion=False``: one pass only (a door's retry attempt, decided after its first answer's
        second opinion, as the library decides attempts). ``generate_rows`` (with ``generate``): the
        door's one-call generation of several rows of the prompt, which draws a second opinion's samples
        in one batch (None: one ``generate`` call per sample, the same answers). ``question`` is what
        the answer is judged and logged against (default: ``prompt.question``); ``context`` the
        grounding passage the record keeps; ``strategy`` names the first answer's making (default:
        ``params.strategy``, else ``"greedy"``).
        """
        if question is None:
            if prompt is None:
                raise InvalidParameterError("Judge.decide needs the question (or the prompt it was asked with).")
            question = prompt.question
        if strategy is None:
            strategy = params.strategy if params is not None else "greedy"
        regenerate = None
        candidate = self.candidate(first, question, strategy=strategy)
        opinion = None
        wanted = second_opinion and self.second_opinion is not None and self.second_opinion.wanted(candidate.risk)
        if generate is not None:
            if prompt is None or params is None:
                raise InvalidParameterError("Judge.decide can only retry with the first answer's prompt and params.")
            remembered = Remembered(generate, generate_rows)  # a retry asking for a sample drawn gets it back
            if retry:
                regenerate = self.regenerator(prompt, params, remembered, question=question)
            if wanted:
                candidate, opinion = self.second_look(candidate, prompt, params, remembered, question)
        elif wanted:
            candidate = dataclasses.replace(
                candidate, reason=f"{candidate.reason}; no second opinion: this answer cannot be sampled again here"
            )
        verdict = self.verdict(apply_policy(policy, candidate, regenerate), question=question, context=context)
        verdict.second_opinion = opinion
        return verdict

    def second_look(
        self, candidate: Candidate, prompt: Prompt, params: GenerationParams, generate: Remembered, question: str
    ) -> tuple[Candidate, SecondOpinion]:
        """Sample the first answer's question again (one batched call where the door has one) and decide it
        on the cascade's final risk."""
        consistency = self.second_opinion
        assert consistency is not None and consistency.cascade is not None and candidate.risk is not None
        drawn = [
            self.candidate(answer, question, strategy="second-opinion")
            for answer in generate.rows(prompt, consistency.sample_params(params))
        ]
        compared = consistency.compare(candidate.answer, [c.answer for c in drawn], question)
        spans, agrees, agreement = compared.spans, compared.agrees, compared.agreement
        cascade = consistency.cascade
        risk = cascade.combine(candidate.risk, agreement)
        crossed = self.rule.crosses(risk)
        early = isinstance(candidate.payload, Assessed) and candidate.payload.early_stopped
        reason = (
            f"second opinion: {sum(agrees)} of {len(agrees)} samples agree; risk {candidate.risk:.3f} -> "
            f"{risk:.3f} {'>' if crossed else '<='} threshold {self.rule.threshold:.3f}"
        )
        if early:
            reason = f"generation stopped early on a risky running score; {reason}"
        opinion = SecondOpinion(
            samples=len(drawn),
            agreement=agreement,
            one_pass_risk=candidate.risk,
            risk=risk,
            band=(cascade.low, cascade.high),
            weight=cascade.weight,
            answers=[
                SampledAnswer(answer=c.answer, span=span, risk=c.risk, agrees=ok)
                for c, span, ok in zip(drawn, spans, agrees)
            ],
        )
        return dataclasses.replace(candidate, risk=risk, flagged=crossed or early, reason=reason), opinion

    def regenerator(
        self, prompt: Prompt, params: GenerationParams, generate: Generate, *, question: str | None = None
    ) -> Regenerate:
        """The policy's ``regenerate(strategy, attempt)``: the strategy makes the attempt's prompt and
        params, ``generate`` the answer, this judge its candidate (against ``question``, default
        ``prompt.question``)."""
        judged = prompt.question if question is None else question

        def regenerate(strategy: RetryStrategy, attempt: int) -> Candidate:
            made = strategy.next_attempt(prompt, params, attempt)
            if not (
                isinstance(made, tuple)
                and len(made) == 2
                and isinstance(made[0], Prompt)
                and isinstance(made[1], GenerationParams)
            ):
                raise InvalidParameterError(
                    f"retry strategy {strategy!r}: next_attempt(prompt, params, attempt) must return a "
                    f"(Prompt, GenerationParams) pair, got {made!r}; e.g. (prompt.with_instruction(...), "
                    "params.greedy_copy())."
                )
            next_prompt, next_params = made
            return self.candidate(generate(next_prompt, next_params), judged, strategy=strategy.name)

        return regenerate

    def verdict(self, decision: Decision, *, question: str, context: str | None = None) -> Verdict:
        """The :class:`Verdict` of a policy decision whose candidates came from :meth:`candidate`."""
        chosen = decision.chosen
        payload: Assessed | None = chosen.payload if isinstance(chosen.payload, Assessed) else None
        scored = payload.scored if payload else None
        verdict = Verdict(
            question=question,
            context=context,
            answer=decision.shown,
            original_answer=chosen.answer,
            action=decision.action,
            flagged=chosen.flagged,
            score=chosen.risk,
            threshold=self.rule.threshold,
            rule_version=self.rule.version,
            reason=chosen.reason,
            spec=self.rule.spec.name,
            locator=self.rule.locator,
            model=self.model,
            span=payload.span if payload else None,
            tokens=[t.literal if t.special and t.literal is not None else t.text for t in scored.tokens]
            if scored
            else [],
            token_scores=list(scored.spilled_energy) if scored else [],
            attempts=attempts_of(decision),
            early_stopped=bool(payload and payload.early_stopped),
        )
        return attach_scored(verdict, scored)


class Remembered:
    """A door's ``generate`` (and ``generate_rows``) that answers a (prompt, params) it was already asked
    with the same answer: within one decision, a retry whose strategy draws what the second opinion drew
    (same prompt, temperature, top_p and seed) takes that sample instead of generating it twice."""

    def __init__(self, generate: Generate, generate_rows: GenerateRows | None = None):
        self.generate, self.generate_rows = generate, generate_rows
        self.drawn: dict[tuple[tuple[int, ...], GenerationParams], Generated] = {}

    def __call__(self, prompt: Prompt, params: GenerationParams) -> Generated:
        key = (tuple(prompt.ids), params)
        if key not in self.drawn:
            self.drawn[key] = self.generate(prompt, params)
        return self.drawn[key]

    def rows(self, prompt: Prompt, params: Sequence[GenerationParams]) -> list[Generated]:
        """One answer per ``params``: those not drawn yet in one ``generate_rows`` call (else one by one)."""
        todo = list(dict.fromkeys(p for p in params if (tuple(prompt.ids), p) not in self.drawn))
        if len(todo) > 1 and self.generate_rows is not None:
            made = self.generate_rows(prompt, todo)
            if not isinstance(made, list) or len(made) != len(todo):
                raise InvalidParameterError(
                    f"generate_rows(prompt, params) must return one Generated per params ({len(todo)}), got {made!r}."
                )
            self.drawn.update({(tuple(prompt.ids), p): g for p, g in zip(todo, made)})
        return [self(prompt, p) for p in params]


def attempts_of(decision: Decision) -> list[Attempt]:
    """Every answer a decision tried, in order, as the verdict lists them."""
    return [
        Attempt(
            answer=c.answer,
            score=c.risk,
            flagged=c.flagged,
            strategy=c.strategy,
            reason=c.reason,
            prompt_ids=list(c.prompt_ids),
        )
        for c in decision.attempts
    ]
