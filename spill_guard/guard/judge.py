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

from collections.abc import Callable
from dataclasses import dataclass

from spill_guard.errors import InvalidParameterError
from spill_guard.guard.assess import Assessed, assess
from spill_guard.guard.risk_rule import RiskRule
from spill_guard.guard.verdict import Attempt, Verdict, attach_scored
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


class Judge:
    """A risk rule and an answer-span locator: what decides every answer, whatever the door.

    Args:
        rule: the calibrated (or fixed) :class:`RiskRule`.
        locator: where the exact answer is in an answer text.
        model: the model name verdicts carry.
    """

    def __init__(self, rule: RiskRule, locator: SpanLocator, model: str):
        self.rule = rule
        self.locator = locator
        self.model = model

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
        question: str | None = None,
        context: str | None = None,
        strategy: str | None = None,
    ) -> Verdict:
        """Decide ``first`` (the answer to ``prompt`` made with ``params``) under ``policy``.

        ``generate`` makes a retry's answer (it needs ``prompt`` and ``params``); ``None`` when none
        can be made (an answer produced elsewhere), so a ``Retry`` falls back. ``question`` is what
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
        if generate is not None:
            if prompt is None or params is None:
                raise InvalidParameterError("Judge.decide can only retry with the first answer's prompt and params.")
            regenerate = self.regenerator(prompt, params, generate, question=question)
        candidate = self.candidate(first, question, strategy=strategy)
        return self.verdict(apply_policy(policy, candidate, regenerate), question=question, context=context)

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
