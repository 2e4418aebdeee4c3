"""``SpillGuard``: generate → locate the answer span → score → decide → act → log.

The one object applications and the LangChain / LlamaIndex integrations use. It owns no
maths: capture and scoring live in :class:`~spill_guard.SpillModel`, the decision rule in a
:class:`RiskRule` (fixed threshold or calibration file), the action in a policy object, the
record in a review-log sink.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from spill_guard.backends.base import STOPS_EARLY
from spill_guard.calibration.consistency import Consistency
from spill_guard.capture.final_step import check_final_step_mode
from spill_guard.capture.streaming import CAPTURE_STATS
from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.guard.early_stop import EarlyStop, EarlyStopWatch
from spill_guard.guard.judge import Generated, GenerateRows, Judge
from spill_guard.guard.recording import ON_LOG_ERROR, LogEntry, VerdictLog
from spill_guard.guard.risk_rule import RiskRule
from spill_guard.guard.rule_from_calibration import resolve_rule
from spill_guard.guard.stream import StreamCancel, stream_generation
from spill_guard.guard.verdict import HallucinationDetected, TokenEvent, Verdict, VerdictNotLoggedWarning
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import Prompt
from spill_guard.observability.verdict_metrics import resolve_metrics
from spill_guard.policy.base import Action, Candidate, Decision, Policy
from spill_guard.policy.flag import Flag
from spill_guard.report import ScoredAnswer
from spill_guard.scoring.specs import ScoreSpec
from spill_guard.spans import SpanLocator, make_locator
from spill_guard.spill_model import SpillModel

#: Scorers that read the per-step softmax (entropy, JSD), so need a "full" capture.
DISTRIBUTION_SCORERS = frozenset({"entropy", "instability"})

__all__ = ["DISTRIBUTION_SCORERS", "LogEntry", "ON_LOG_ERROR", "SpillGuard"]


class SpillGuard:
    """Guard a local model's answers with a calibrated spilled-energy threshold.

    Args:
        model: a :class:`SpillModel`; ``None`` loads the embedded SmolLM2-135M-Instruct.
        threshold: flag when the risk score exceeds this (fixes the rule without calibration).
        calibration: a calibration object or the path of a calibration JSON file
            (``spill-guard calibrate``). With neither ``threshold`` nor ``calibration``, the
            packaged calibration of the model is used if there is one.
        spec: score as ``"scorer:pooling[@beta]"`` (default: the calibration's, else
            ``spilled_energy:mean``). Must match the calibration unless ``override=True``.
        locator: answer-span locator name (``full``, ``answer_is``, ``numeric`` ..., joined by
            ``+``) or a :class:`~spill_guard.spans.SpanLocator`. Default: the calibration's, else ``full``.
        policy: ``Flag()`` (default), ``Abstain(...)``, ``Retry(...)``, ``Raise()``.
        log: review log path (``.jsonl`` or ``.sqlite``) or sink; ``None`` for no log.
        log_all: log every answer (default) or only flagged ones.
        max_new_tokens: generation budget per answer.
        early_stop: an :class:`EarlyStop` to end clearly risky answers before they finish.
        override: accept a calibration made for another model/spec/locator (at your own risk).
        capture_stats: ``"auto"`` (default) captures energies and likelihoods only when the
            rule's score needs nothing else (the cheaper capture), else everything; or force
            ``"full"`` (e.g. to keep entropy baselines in ``verdict.scored.pooled``) or ``"energy"``.
        on_log_error: when the review log cannot write a verdict (read-only file, full disk,
            metadata it cannot encode): ``"raise"`` (default) a :class:`VerdictNotLoggedError`
            carrying the verdict(s), or ``"warn"`` and return the verdict unlogged
            (``record_id=None``).
        metrics: Prometheus metrics of every verdict (extra ``metrics``): ``True`` for
            prometheus-client's default registry, a ``CollectorRegistry``, or a
            ``VerdictMetrics``; ``None`` (default): none (docs/observability.md).
        final_step: ``"auto"`` (default) skips the forward step for ``z_{T+1}`` after an
            answer that ended on a stop token without text: no span includes that token, so
            its Δ (``token_scores[-1]``) is left ``None``/NaN. ``"always"`` computes it
            (one more decoding step per answer; :mod:`spill_guard.capture.final_step`).
        second_opinion: a :class:`~spill_guard.calibration.consistency.Consistency` with a cascade: a
            first answer whose one-pass risk falls in the cascade's band is sampled again and decided on
            the blend of its risk and the samples' agreement (``verdict.second_opinion``). A calibration
            fitted with ``--second-opinion`` brings its own (then give at most its equivalence).
    """

    def __init__(
        self,
        model: SpillModel | None = None,
        *,
        threshold: float | None = None,
        calibration: Any = None,
        spec: ScoreSpec | str | None = None,
        locator: SpanLocator | str | None = None,
        policy: Policy | None = None,
        log: Any = None,
        log_all: bool = True,
        max_new_tokens: int = 64,
        early_stop: EarlyStop | None = None,
        override: bool = False,
        capture_stats: str = "auto",
        on_log_error: str = "raise",
        metrics: Any = None,
        final_step: str = "auto",
        second_opinion: Consistency | None = None,
    ):
        _check_types(
            model=model,
            threshold=threshold,
            spec=spec,
            locator=locator,
            log_all=log_all,
            override=override,
            on_log_error=on_log_error,
        )
        if policy is not None and not isinstance(policy, Policy):
            raise InvalidParameterError(
                f"policy must be Flag(), Abstain(...), Retry(...) or Raise() from spill_guard.policy, got {policy!r}."
            )
        if early_stop is not None and not isinstance(early_stop, EarlyStop):
            raise InvalidParameterError(f"early_stop must be an EarlyStop(...), got {early_stop!r}.")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InvalidParameterError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}.")
        metrics = resolve_metrics(metrics)  # before the model loads: a wrong value fails at once
        self.final_step = check_final_step_mode(final_step)
        self.model = model if model is not None else SpillModel.load()
        if early_stop is not None:  # checked once, here: a backend that cannot stop rows mid-generation is refused
            self.model.require(STOPS_EARLY, "early_stop=EarlyStop(...)")
        locator_name = (
            locator if isinstance(locator, str) or locator is None else getattr(locator, "name", type(locator).__name__)
        )
        self._second_opinion = second_opinion  # the guard's own; a calibration may bring one (resolve_rule)
        rule = resolve_rule(
            self.model,
            threshold=threshold,
            calibration=calibration,
            spec=spec,
            locator=locator_name,
            override=override,
            second_opinion=second_opinion,
        )
        self.locator: SpanLocator = locator if isinstance(locator, SpanLocator) else make_locator(rule.locator)
        if early_stop is not None:
            self._check_beta("early_stop", early_stop.beta)
        if capture_stats not in ("auto", *CAPTURE_STATS):
            raise InvalidParameterError(f"capture_stats must be 'auto', 'full' or 'energy', got {capture_stats!r}.")
        needs_full = rule.spec.scorer in DISTRIBUTION_SCORERS
        self.capture_stats = ("full" if needs_full else "energy") if capture_stats == "auto" else capture_stats
        self._check_rule(rule)
        self.judge = Judge(rule, self.locator, self.model.loaded.name)
        self.policy = policy if policy is not None else Flag()
        self.recorder = VerdictLog(log, log_all=log_all, on_log_error=on_log_error, metrics=metrics)
        self.max_new_tokens = max_new_tokens
        self.early_stop = early_stop

    # -- public API ----------------------------------------------------------------------
    @property
    def rule(self) -> RiskRule:
        """The decision rule: the judge's, which every door decides with. Assigning a new one (e.g. a
        recalibrated threshold, ``dataclasses.replace(guard.rule, threshold=...)``) takes effect
        from the next answer, in this process, whatever the door."""
        return self.judge.rule

    @rule.setter
    def rule(self, rule: RiskRule) -> None:
        if not isinstance(rule, RiskRule):
            raise InvalidParameterError(
                f"a guard's rule must be a RiskRule, got {rule!r}; build one with "
                "dataclasses.replace(guard.rule, threshold=...) or guard.recalibrate(...)."
            )
        self._check_rule(rule)
        locator = self.locator if rule.locator == self.judge.rule.locator else make_locator(rule.locator)
        # A new judge, swapped in one assignment: a decision under way keeps the judge it started with.
        self.judge = Judge(rule, locator, self.model.loaded.name)
        self.locator = locator

    def recalibrate(self, *, calibration: Any = None, threshold: float | None = None) -> RiskRule:
        """Judge every later answer by a new rule, from a calibration (a :class:`~spill_guard.calibration.Calibration`
        or its file) or a fixed threshold, checked against this guard's model as at construction;
        returns the rule it replaced. Decisions already under way finish on the old rule, and each
        verdict names its rule's :attr:`~spill_guard.guard.risk_rule.RiskRule.version`."""
        if (calibration is None) == (threshold is None):
            raise InvalidParameterError("recalibrate takes a calibration or a threshold (one of them).")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)):
            raise InvalidParameterError(f"threshold must be a number, got {threshold!r}.")
        previous = self.rule
        if threshold is not None:  # the same score, span and orientation, another threshold (on the risk scale)
            self.rule = RiskRule(
                previous.spec,
                previous.locator,
                float(threshold),
                previous.direction,
                "threshold",
                second_opinion=previous.second_opinion,
            )
        else:
            self.rule = resolve_rule(
                self.model,
                threshold=None,
                calibration=calibration,
                spec=None,
                locator=None,
                override=False,
                second_opinion=self._second_opinion,
            )
        return previous

    def _check_beta(self, needs: str, beta: float) -> None:
        if beta not in self.model.betas:  # else the first generation would fail half-way
            raise InvalidParameterError(
                f"{needs} needs beta {beta}, which this SpillModel does not capture (betas "
                f"{list(self.model.betas)}); load it with extra_betas=({beta},)."
            )

    def _check_rule(self, rule: RiskRule) -> None:
        """What a rule needs from this guard's capture: its spec's beta, and entropy/JSD where it reads them."""
        where = "" if rule.source == "threshold" else f" (from {rule.source})"  # names a calibration file
        self._check_beta(f"the rule's spec {rule.spec.name}{where}", rule.spec.beta)
        if self.capture_stats == "energy" and rule.spec.scorer in DISTRIBUTION_SCORERS:
            raise InvalidParameterError(
                f"{rule.spec.name} needs entropy/JSD, which capture_stats='energy' skips; build the guard "
                "with capture_stats='full' (or 'auto' when the rule it starts with needs them)."
            )

    @property
    def threshold(self) -> float:
        return self.rule.threshold

    @property
    def params(self) -> GenerationParams:
        """The generation params of a first answer: greedy, ``max_new_tokens``."""
        return GenerationParams(max_new_tokens=self.max_new_tokens)

    @property
    def sink(self) -> Any:
        return self.recorder.sink

    @property
    def log_all(self) -> bool:
        return self.recorder.log_all

    @property
    def on_log_error(self) -> str:
        return self.recorder.on_log_error

    @property
    def metrics(self) -> Any:
        return self.recorder.metrics

    def prompt(self, question: str, *, context: str | None = None) -> Prompt:
        """The :class:`Prompt` this guard's model is fed for ``question``."""
        model = self.model
        return Prompt.for_question(
            model.tokenizer, question, context=context, system=model.system, instruction=model.instruction
        )

    def ask(
        self,
        question: str,
        *,
        context: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """Answer ``question`` under the guard and return the :class:`Verdict`."""
        return self.ask_batch([question], contexts=[context], tags=tags, metadata=metadata)[0]

    def ask_batch(
        self,
        questions: Sequence[str],
        *,
        contexts: Sequence[str | None] | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> list[Verdict]:
        """Answer several questions in one batched generation; one verdict each, in order.

        Under ``Raise()``, every verdict is decided and logged first, then the first raised
        one is raised. If the review log fails on any of them (``on_log_error="raise"``),
        every verdict is still decided and the rest still logged, then one
        :class:`VerdictNotLoggedError` carrying all of them (``.verdicts``) is raised; it
        takes precedence over ``HallucinationDetected`` (the verdicts show ``action``).
        """
        questions = _check_questions(questions)
        _check_record_fields(tags, metadata)
        contexts = list(contexts) if contexts is not None else [None] * len(questions)
        if len(contexts) != len(questions):
            raise InvalidInputError(
                f"{len(questions)} questions but {len(contexts)} contexts; pass one context per question."
            )
        prompts = [self.prompt(q, context=c) for q, c in zip(questions, contexts)]
        params = self.params
        answers = self._generate(prompts, params)
        verdicts = [
            self.judge.decide(
                first,
                prompt=p,
                params=params,
                policy=self.policy,
                generate=self._generate_one,
                generate_rows=self.row_generator,
                context=c,
            )
            for first, p, c in zip(answers, prompts, contexts)
        ]
        self.log_many([LogEntry(v, tuple(tags), metadata) for v in verdicts])  # one write for the batch
        _raise_first(verdicts)
        return verdicts

    def check(
        self,
        question: str,
        answer: str,
        *,
        context: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """Judge an answer produced elsewhere (scored with one teacher-forced pass).

        ``Retry`` does not replace it, so its fallback decides; a second opinion samples this guard's
        model on the question, as for its own answers.
        """
        _check_record_fields(tags, metadata)
        scored = self.model.score_answer(question, answer, context=context)
        return self.decide(scored, question=question, context=context, tags=tags, metadata=metadata)

    def decide(
        self,
        scored: ScoredAnswer,
        *,
        question: str,
        context: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """Apply the rule and policy to a :class:`ScoredAnswer` you already have."""
        _check_record_fields(tags, metadata)
        verdict = self._decide(
            Generated(scored),
            self.prompt(question, context=context),
            context,
            tags,
            metadata,
            generate=self._generate_one,  # samples a second opinion, never a retry: the answer is the caller's
            retry=False,
        )
        _raise_first([verdict])
        return verdict

    def stream(
        self,
        question: str,
        *,
        context: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Iterator[TokenEvent | Verdict]:
        """Yield a :class:`TokenEvent` per generated token, then the final :class:`Verdict`.

        Events are those of the first answer; if the policy retries, the verdict (last item)
        carries the answer finally chosen.

        A consumer that stops early (``break``, ``close()``) ends the generation at its next
        step; the answer generated so far is then judged without retries and logged, with
        ``stream_closed_after_tokens`` in the record's metadata.
        """
        [question] = _check_questions([question])
        _check_record_fields(tags, metadata)
        prompt = self.prompt(question, context=context)
        cancel = StreamCancel()
        # A backend that replays its events after generating (vLLM) has no running generation to cancel.
        stopping = [cancel] if self.model.capabilities.stops_early else []
        items = stream_generation(
            lambda listener: self._generate([prompt], self.params, listeners=[listener], stopping=stopping),
            self.model.tokenizer,
            self.rule.spec.beta,
        )
        sent = 0
        decided = False
        try:
            for item in items:
                if isinstance(item, TokenEvent):
                    sent += 1  # counted before the yield: a consumer may stop at any yield
                    yield item
                    continue
                [first] = item
                decided = True
                verdict = self._decide(first, prompt, context, tags, metadata, generate=self._generate_one)
                _raise_first([verdict])
                yield verdict
        except GeneratorExit:
            if not decided:
                cancel.set()
                self._log_abandoned(
                    items, question, context, tags, {**(metadata or {}), "stream_closed_after_tokens": sent}
                )
            raise

    def assess(self, scored: ScoredAnswer, question: str, *, strategy: str = "greedy") -> Candidate:
        """The policy candidate for ``scored`` (:meth:`Judge.candidate`)."""
        return self.judge.candidate(Generated(scored), question, strategy=strategy)

    def verdict_from(self, decision: Decision, *, question: str, context: str | None = None) -> Verdict:
        """Build the :class:`Verdict` of a policy decision whose candidates came from :meth:`assess`."""
        return self.judge.verdict(decision, question=question, context=context)

    def log(
        self, verdict: Verdict, *, tags: Sequence[str] = (), metadata: Mapping[str, Any] | None = None
    ) -> str | None:
        """Write ``verdict`` to the review log (if any); returns the record id and stores it on the verdict.

        If the sink fails: raises :class:`VerdictNotLoggedError` (``.verdict`` is this verdict), or
        with ``on_log_error="warn"`` warns :class:`VerdictNotLoggedWarning` and returns ``None``.
        Every verdict passed here is also an OpenTelemetry ``gen_ai.evaluation.result`` event
        (docs/observability.md), emitted first, whether or not a review log is configured, and
        counted in the guard's Prometheus ``metrics`` (if any). (:meth:`VerdictLog.record`.)
        """
        return self.recorder.record(verdict, tags=tags, metadata=metadata)

    def log_many(self, entries: Sequence[LogEntry]) -> list[str | None]:
        """:meth:`log` for several verdicts with one review-log write (:meth:`VerdictLog.record_many`)."""
        return self.recorder.record_many(entries)

    def observe(self, verdict: Verdict) -> None:
        """The OpenTelemetry event and Prometheus metrics of one verdict (what :meth:`log` does first).

        A host that batches the write for several requests (the server) calls this per verdict
        in each request's own context, then :meth:`write_log` once, then :meth:`settle_log`.
        """
        self.recorder.observe(verdict)

    def write_log(self, entries: Sequence[LogEntry]) -> list[Exception | None]:
        """Write the records of ``entries`` with one sink call (:meth:`VerdictLog.write`)."""
        return self.recorder.write(entries)

    def settle_log(self, verdict: Verdict, failure: Exception | None) -> str | None:
        """Apply ``on_log_error`` to one verdict's write (:meth:`VerdictLog.settle`)."""
        return self.recorder.settle(verdict, failure)

    def close(self) -> None:
        self.recorder.close()

    def __enter__(self) -> SpillGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SpillGuard(model={self.model.loaded.name!r}, spec={self.rule.spec.name!r}, "
            f"locator={self.rule.locator!r}, threshold={self.rule.threshold:.4g}, policy={self.policy!r})"
        )

    # -- internals -----------------------------------------------------------------------
    def _log_abandoned(
        self, items: Iterator[Any], question: str, context: str | None, tags: Sequence[str], metadata: Mapping[str, Any]
    ) -> None:
        """Judge and log what a stream generated before its consumer left (no retries, nothing raised).

        Runs while the stream generator is being closed, where raising would only reach a
        garbage collector, so failures become warnings.
        """
        try:
            for item in items:  # the cancelled generation ends at its next step
                if not isinstance(item, TokenEvent):
                    [first] = item
                    self._decide(first, self.prompt(question, context=context), context, tags, metadata, generate=None)
        except Exception as exc:
            warnings.warn(
                f"stream on {question!r} closed early; its partial answer was not logged: {type(exc).__name__}: {exc}",
                VerdictNotLoggedWarning,
                stacklevel=2,
            )

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: GenerationParams,
        *,
        listeners: Sequence[Any] = (),
        stats: str | None = None,
    ) -> list[Generated]:
        """One batched generation of ``prompts`` with ``params``, as this guard generates every answer.

        The guard's capture (``stats``: default the guard's ``capture_stats``; a door that reports
        baselines passes ``"full"``), its ``final_step`` and its early stop apply; ``listeners`` see
        each token's step. Doors built on a guard (the LangChain and LlamaIndex models) call this,
        so their answers are the library's answers.
        """
        return self._generate(prompts, params, listeners=listeners, stats=stats)

    def _generate(
        self,
        prompts: Sequence[Prompt],
        params: GenerationParams | Sequence[GenerationParams],
        *,
        listeners: Sequence[Any] = (),
        stopping: Sequence[Any] = (),
        stats: str | None = None,
    ) -> list[Generated]:
        watch = EarlyStopWatch(self.early_stop, len(prompts), self.model.loaded.stop_token_ids)
        # final_step="auto": an answer span never includes a stop token without text, so its Δ is not computed.
        answers = self.model.generate_params(
            [p.ids for p in prompts],
            params,
            listeners=[*listeners, *watch.listeners],
            stop_hooks=[*stopping, *watch.hooks],
            stats=stats or self.capture_stats,
            final_step=self.final_step,
        )
        return [Generated(answer, stopped) for answer, stopped in zip(answers, watch.cut(answers))]

    def _generate_one(self, prompt: Prompt, params: GenerationParams) -> Generated:
        """A retry's answer (the judge's ``generate``)."""
        return self._generate([prompt], params)[0]

    def _generate_rows(self, prompt: Prompt, params: Sequence[GenerationParams]) -> list[Generated]:
        """Several answers to one prompt, one per params, in one batched call (the judge's ``generate_rows``)."""
        return self._generate([prompt] * len(params), params)

    @property
    def row_generator(self) -> GenerateRows | None:
        """The judge's ``generate_rows`` (a question's second-opinion samples in one batched call, as this
        guard generates) where the model's rows can each have their own seed, else None (one call each).
        Doors built on a guard pass it to :meth:`Judge.decide` with their ``generate``."""
        return self._generate_rows if self.model.capabilities.per_row_seeds else None

    def _decide(
        self,
        first: Generated,
        prompt: Prompt,
        context: str | None,
        tags: Sequence[str],
        metadata: Mapping[str, Any] | None,
        *,
        generate: Any,
        retry: bool = True,
    ) -> Verdict:
        verdict = self.judge.decide(
            first,
            prompt=prompt,
            params=self.params,
            policy=self.policy,
            generate=generate,
            generate_rows=None if generate is None else self.row_generator,
            context=context,
            retry=retry,
        )
        self.log(verdict, tags=tags, metadata=metadata)
        return verdict


def _check_questions(questions: Sequence[str] | str) -> list[str]:
    if isinstance(questions, str):
        raise InvalidInputError("ask_batch takes a list of questions; use ask() for a single string.")
    questions = list(questions)
    if not questions:
        raise InvalidInputError("no questions given; pass at least one non-empty question.")
    for i, q in enumerate(questions):
        if not isinstance(q, str) or not q.strip():
            raise InvalidInputError(f"question {i} is empty or not a string ({q!r}); pass the text to answer.")
    return questions


def _check_record_fields(tags: Any, metadata: Any) -> None:
    """Tags and metadata go into the review record: refuse wrong types before generating."""
    if (
        isinstance(tags, str)
        or not isinstance(tags, (list, tuple, set, frozenset))
        or not all(isinstance(t, str) for t in tags)
    ):
        raise InvalidInputError(f"tags must be a list of strings, e.g. ['demo'], got {tags!r}.")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a dict (or None), got {metadata!r}.")


def _raise_first(verdicts: Sequence[Verdict]) -> None:
    for verdict in verdicts:
        if verdict.action is Action.RAISED:
            raise HallucinationDetected(verdict, verdicts=list(verdicts))


def _check_types(**given: Any) -> None:
    """Refuse wrong types up front, with the value, instead of a raw error deep in the set-up."""
    model = given["model"]
    if model is not None and not isinstance(model, SpillModel):
        hint = f"SpillModel.load({model!r})" if isinstance(model, str) else "SpillModel.load(...)"
        raise InvalidParameterError(f"model must be a SpillModel (e.g. {hint}) or None, got {model!r}.")
    threshold = given["threshold"]
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or math.isnan(threshold)
    ):
        raise InvalidParameterError(f"threshold must be a number (a risk score), got {threshold!r}.")
    spec = given["spec"]
    if spec is not None and not isinstance(spec, (str, ScoreSpec)):
        raise InvalidParameterError(f"spec must be a 'scorer:pooling[@beta]' string or a ScoreSpec, got {spec!r}.")
    locator = given["locator"]
    if locator is not None and not isinstance(locator, (str, SpanLocator)):
        raise InvalidParameterError(f"locator must be a locator name such as 'full' or a SpanLocator, got {locator!r}.")
    for flag in ("log_all", "override"):
        if not isinstance(given[flag], bool):
            raise InvalidParameterError(f"{flag} must be True or False, got {given[flag]!r}.")
    if given["on_log_error"] not in ON_LOG_ERROR:
        raise InvalidParameterError(f"on_log_error must be 'raise' or 'warn', got {given['on_log_error']!r}.")
