"""The second opinion's sampling side: how many answers, how they are drawn, and how far they agree.

(It lives with calibration, below the guard, because ``spill-guard calibrate --second-opinion`` and
``spill-guard bench --second-opinion`` draw and compare samples exactly as the guard does.)

:class:`Consistency` says how a second opinion is drawn (``samples`` answers at ``temperature``, each
with the seed the retry strategies would give the same attempt, so a ``Retry(Resample)`` can take
them as its candidates) and measures :meth:`Consistency.agreement`: the share of samples whose
located answer span says the same as the first answer's, by the project's answer normaliser and
judge (either span judged correct against the other), or by an ``equivalence`` you give (long
answers). Where it is asked for, and how agreement and the one-pass risk combine, is the
:class:`~spill_guard.calibration.cascade.Cascade`'s business.

The decision path (:meth:`~spill_guard.guard.judge.Judge.decide`) asks for a second opinion on
the first answer of every door that can generate (the library guard, the server, the LangChain and
LlamaIndex guards); the drop-in paths, which only observe someone else's generation, cannot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from spill_guard.calibration.cascade import Cascade
from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.models.params import GenerationParams, retry_seed
from spill_guard.spans import make_locator
from spill_guard.tasks import judge

Equivalence = Callable[[str, str], bool]
#: The samples' temperature where none is given (the guard's, ``calibrate`` and ``bench --second-opinion``):
#: chosen on the built-in dev split among 0.3 / 0.5 / 0.7 / 1.0 (bench/results/second_opinion_eval.md): at 0.5 the
#: samples' agreement ranks answers best there and the samples are a third shorter than at 1.0.
DEFAULT_TEMPERATURE = 0.5
#: Where the compared answer is: a quoted answer, else what follows "... is", else the answer without filler.
AGREEMENT_LOCATOR = "quoted+answer_is+strip_filler"


@dataclass(frozen=True)
class Comparison:
    """A first answer against its samples: the located spans, which samples agree, and the share that do."""

    first_span: str | None
    spans: list[str | None]
    agrees: list[bool]
    agreement: float


def same_answer(first: str, other: str) -> bool:
    """Whether two located answer spans say the same thing: either judged a correct answer to the other
    by the project's normaliser and judge ("Paris" and "paris, France" agree; "1969" and "1970" do not)."""
    try:
        return judge(other, [first]) or judge(first, [other])
    except InvalidInputError:  # one of them is empty after normalisation (only punctuation or articles)
        return False


def check_sampling(
    samples: object,
    temperature: object,
    *,
    samples_option: str | None = None,
    temperature_option: str | None = None,
) -> None:
    """Check a second opinion's sample count (an integer 1..64) and temperature (in (0, 10]); either may be None
    (not given). The error names ``samples_option`` / ``temperature_option`` (a command-line option) where
    given, else the :class:`Consistency` field: the one check behind the class and the CLI options."""
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= 64):
        name, fix = (
            (f"{samples_option} (samples per question)", f"e.g. {samples_option} 5")
            if samples_option
            else ("Consistency samples", "5 is a good start")
        )
        raise InvalidParameterError(f"{name} must be an integer from 1 to 64, got {samples!r}; {fix}.")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or not 0 < temperature <= 10
    ):
        name = temperature_option or "Consistency temperature"
        fix = (
            f"e.g. {temperature_option} {DEFAULT_TEMPERATURE:g}"
            if temperature_option
            else f"e.g. {DEFAULT_TEMPERATURE:g}"
        )
        raise InvalidParameterError(
            f"{name} must be in (0, 10], got {temperature!r}: samples must be sampled (0 would repeat the greedy "
            f"answer); {fix}."
        )


@dataclass(frozen=True)
class Consistency:
    """Draw ``samples`` answers at ``temperature`` / ``top_p`` and measure their agreement with the first.

    ``cascade``: where (one-pass risk band) and how much (weight) the agreement counts; None asks
    for a second opinion on every answer (consistency as a baseline). ``equivalence(first, other)``
    replaces :func:`same_answer` (e.g. an entailment model for long answers). ``locator`` finds the
    part of each answer that is compared (default: a quoted answer, else what follows "is", else the
    answer without filler; ``"full"`` compares whole answers).
    """

    samples: int = 5
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = 1.0
    cascade: Cascade | None = None
    equivalence: Equivalence | None = None
    locator: str = AGREEMENT_LOCATOR

    def __post_init__(self) -> None:
        check_sampling(self.samples, self.temperature)
        if not isinstance(self.top_p, (int, float)) or not (0 < self.top_p <= 1):
            raise InvalidParameterError(f"Consistency top_p must be in (0, 1], got {self.top_p!r}.")
        if self.cascade is not None and not isinstance(self.cascade, Cascade):
            raise InvalidParameterError(f"cascade must be a Cascade(low, high, weight) or None, got {self.cascade!r}.")
        object.__setattr__(self, "_locator", make_locator(self.locator))  # a bad name fails here
        if self.equivalence is not None and not callable(self.equivalence):
            raise InvalidParameterError(
                f"equivalence must be a function (first, other) -> bool, got {self.equivalence!r}."
            )

    def wanted(self, risk: float | None) -> bool:
        """Whether an answer with this one-pass risk gets a second opinion."""
        if self.cascade is None:
            return risk is not None and math.isfinite(risk)
        return self.cascade.unsure(risk)

    def sample_params(self, params: GenerationParams) -> list[GenerationParams]:
        """The params of each sample: ``params`` sampled at this temperature, sample ``k`` (1..K) seeded as
        retry attempt ``k + 1`` of a call seeded ``params.seed`` (:func:`retry_seed`): the same seed gives the
        same samples, and a ``Resample`` retry at the same temperature would draw the same answers."""
        return [
            params.sampled(self.temperature, self.top_p, retry_seed(params.seed, k + 1))
            for k in range(1, self.samples + 1)
        ]

    def span(self, answer: str, question: str | None = None) -> str | None:
        """The part of ``answer`` that is compared (None: the locator found nothing)."""
        located = self._locator.locate(answer, question=question)  # type: ignore[attr-defined]
        return None if located is None else located.text

    def agrees(self, first: str | None, samples: Sequence[str | None]) -> list[bool]:
        """For each of ``samples`` (located spans; None: no span), whether it says what ``first`` says.

        A first answer without a span agrees with nothing: the sampled answers cannot confirm it.
        """
        if first is None:
            return [False] * len(samples)
        same = self.equivalence or same_answer
        return [s is not None and bool(same(first, s)) for s in samples]

    def compare(self, first: str, samples: Sequence[str], question: str | None = None) -> Comparison:
        """Locate the compared part of the first answer and of each sampled answer, and compare them."""
        if not samples:
            raise InvalidParameterError("a second opinion needs at least one sampled answer.")
        first_span = self.span(first, question)
        spans = [self.span(s, question) for s in samples]
        agrees = self.agrees(first_span, spans)
        return Comparison(first_span, spans, agrees, sum(agrees) / len(agrees))

    def agreement(self, first: str | None, samples: Sequence[str | None]) -> float:
        """The share of ``samples`` that say what ``first`` says (:meth:`agrees`)."""
        if not samples:
            raise InvalidParameterError("agreement needs at least one sampled answer.")
        return sum(self.agrees(first, samples)) / len(samples)


def draw_samples(
    spill_model: Any,
    prompts: Sequence[Sequence[int]],
    consistency: Consistency,
    params: GenerationParams,
    *,
    batch_size: int = 8,
) -> list[list[str]]:
    """The sampled answers (texts) of many questions at once, for calibration and the benchmark.

    ``prompts``: each question's prompt token ids; sample ``k`` of every question uses
    :meth:`Consistency.sample_params` ``(params)[k]``, ``batch_size`` questions per generate call of
    ``spill_model`` (a :class:`~spill_guard.SpillModel`). Where its backend has per-row seeds
    (:func:`draws_as_the_guard`), a call holds all K samples of its questions, each row seeded as its
    sample: a question's samples are exactly those a guard draws for it. Elsewhere rows of one call
    share the sample's seed, so they are draws from the same distribution, not the same draws.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidParameterError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    sampled = consistency.sample_params(params)
    drawn: list[list[str]] = [[] for _ in prompts]
    if draws_as_the_guard(spill_model):
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            rows = [list(p) for p in chunk for _ in sampled]
            answers = spill_model.generate_params(rows, sampled * len(chunk), stats=None)
            for i, answer in enumerate(answers):
                drawn[start + i // len(sampled)].append(answer.answer)
        return drawn
    for one in sampled:
        for start in range(0, len(prompts), batch_size):
            answers = spill_model.generate_params(list(prompts[start : start + batch_size]), one, stats=None)
            for row, answer in zip(drawn[start : start + batch_size], answers):
                row.append(answer.answer)
    return drawn


def draws_as_the_guard(spill_model: Any) -> bool:
    """Whether :func:`draw_samples` on ``spill_model`` draws each question's samples exactly as a guard on it
    does: its backend can seed each row of a call on its own (capability ``per_row_seeds``)."""
    capabilities = getattr(spill_model, "capabilities", None)
    return bool(getattr(capabilities, "per_row_seeds", False))
