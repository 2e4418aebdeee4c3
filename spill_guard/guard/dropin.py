"""The drop-in path every integration shares: a user's torch model → the recorder → the judge.

An integration that scores a user's unmodified framework model (LangChain's ``ChatHuggingFace`` /
``HuggingFacePipeline``, LlamaIndex's ``HuggingFaceLLM``) takes the torch model and tokenizer
out of it and builds a :class:`DropIn`: the :class:`SpillGuard` whose rule judges answers (given,
or built here on that torch model), the model's
:class:`~spill_guard.capture.recorder.GenerationRecorder` (its ``generate`` wrapped once), and
the two steps after a recorded row: :meth:`DropIn.scored` (the row as a ``ScoredAnswer``) and
:meth:`DropIn.judge` (the guard's rule, through :meth:`Judge.decide` with ``Flag()``: a drop-in
reports, it never replaces an answer). How a row is attributed to a call (run ids, spans) and
where the verdict is delivered stay with each integration.

Retries act on the user's torch model, through the recorder's planner
(:meth:`~spill_guard.capture.recorder.GenerationRecorder.plan`), so a drop-in retries exactly
like every other door:

- :meth:`DropIn.expect` announces a call's prompt (as a :class:`Prompt`, with the ids the
  framework feeds for it and how the framework renders a prompt to ids). Inside a retry
  attempt (:func:`~spill_guard.policy.attempt_scope.current_attempt`, e.g. a LangChain guarded
  runnable re-running the chain), the attempt's strategy makes the attempt's prompt and params
  from the announced prompt and the call's greedy params (its ``max_new_tokens``):
  ``strategy.next_attempt(prompt, params, number)``; the recorder feeds the rendered prompt with
  those params (seeded as the core's transformers backend seeds) and records it.
- :meth:`DropIn.regenerating` runs a block whose generate calls of this model sample with given
  params (the prompt as the framework feeds it): a door that re-asks the framework with the
  attempt's conversation itself (LlamaIndex's guarded engines) uses it.

:func:`resolve_guard` is the one "guard or rule arguments, not both" check, also used by the
integrations' own models (``SpillChatModel``, ``SpillLLM``).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spill_guard.capture.recorder import Claim, GenerationRecorder, RecordedAnswer, Substitution
from spill_guard.errors import CaptureError, InvalidParameterError
from spill_guard.guard.guard import SpillGuard
from spill_guard.guard.judge import Generated
from spill_guard.guard.verdict import Verdict
from spill_guard.models.loader import LoadedModel
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import Prompt
from spill_guard.models.seeding import SeededSampling
from spill_guard.policy.attempt_scope import RetryAttempt, current_attempt
from spill_guard.policy.flag import Flag
from spill_guard.report import ScoredAnswer, build_scored_answer
from spill_guard.spill_model import SpillModel

__all__ = ["DropIn", "Render", "resolve_guard", "substitution_for"]

_FLAG = Flag()  # a drop-in reports; the integrations' guarded wrappers enforce

#: How a framework turns a prompt into the ids it feeds (default: ``prompt.ids``, the core's rendering).
Render = Callable[[Prompt], Sequence[int]]


@dataclass(frozen=True)
class _Announced:
    """A prompt announced for one call: its ids, the prompt, the framework's rendering, the attempt then current."""

    prompt_ids: tuple[int, ...]
    prompt: Prompt
    render: Render
    attempt: RetryAttempt | None


#: ``(drop-in, params)`` of :meth:`DropIn.regenerating` blocks: that drop-in's model samples with params.
_REGENERATING: contextvars.ContextVar[tuple[Any, GenerationParams] | None] = contextvars.ContextVar(
    "spill_guard_dropin_regenerating", default=None
)


def substitution_for(
    prompt_ids: Sequence[int] | None, params: GenerationParams, *, keep_budget: bool = False
) -> Substitution:
    """The recorder's :class:`Substitution` generating ``prompt_ids`` (``None``: the framework's) with ``params``.

    Seeded samples get the core's per-call generator (:class:`SeededSampling`), as the transformers
    backend gives them. ``keep_budget``: leave the framework's ``max_new_tokens`` as it is.
    """
    if params.stop:
        raise InvalidParameterError(
            f"a drop-in retry cannot add text stop sequences {list(params.stop)}: the framework's call stops by "
            "its own settings; use a strategy that keeps the first answer's stops (Resample, Reprompt)."
        )
    sample = not params.greedy
    return Substitution(
        prompt_ids=tuple(int(i) for i in prompt_ids) if prompt_ids is not None else None,
        max_new_tokens=None if keep_budget else params.max_new_tokens,
        do_sample=sample,
        temperature=params.temperature if sample else 1.0,
        top_p=params.top_p if sample else 1.0,
        seeding=SeededSampling(params.seed) if sample and params.seed is not None else None,
    )


def resolve_guard(
    guard: Any,
    *,
    who: str,
    build: Callable[[], SpillGuard],
    threshold: Any = None,
    calibration: Any = None,
    spec: Any = None,
    locator: Any = None,
    other_rule_args: Mapping[str, Any] | None = None,
) -> SpillGuard:
    """The guard to use: ``guard`` when given, else ``build()``.

    ``guard`` fixes the rule, so it excludes every rule argument: ``threshold``, ``calibration``,
    ``spec``, ``locator`` and the caller's ``other_rule_args`` (by name, e.g. ``{"metrics": ...}``),
    each counted as given when not ``None``. ``who`` names the caller in the errors
    (:class:`InvalidParameterError`).
    """
    if guard is None:
        return build()
    if not isinstance(guard, SpillGuard):
        raise InvalidParameterError(f"{who}: guard must be a spill_guard.SpillGuard, got {guard!r}.")
    rule_args = {
        "threshold": threshold,
        "calibration": calibration,
        "spec": spec,
        "locator": locator,
        **(other_rule_args or {}),
    }
    given = [name for name, value in rule_args.items() if value is not None]
    if given:
        listed = ", ".join(f"{name}=" for name in given)
        to_guard = [name for name in given if name != "name"]
        fixes = (
            [f"build the guard with them, SpillGuard(model, {', '.join(f'{n}=...' for n in to_guard)})"]
            if to_guard
            else []
        )
        if "name" in given:
            fixes.append("name the model the guard is built on, LoadedModel(..., name=...)")
        raise InvalidParameterError(
            f"{who}: pass either guard=... or the rule arguments, not both: got guard= and {listed}. The guard "
            f"already fixes its rule: drop {listed}, or {' and '.join(fixes)}, and pass only guard=."
        )
    return guard


class DropIn:
    """A user's torch model, recorded and judged by a guard's rule.

    Args:
        torch_model: the model whose ``generate`` the user's framework calls.
        tokenizer: its tokenizer.
        who: the caller, named in errors (e.g. ``"instrument(llm)"``).
        where: how the user reaches ``torch_model`` (e.g. ``"llm._model"``), for the error when
            ``guard`` wraps another model.
        guard: a :class:`SpillGuard` over ``torch_model`` (``guard.model.loaded.model is
            torch_model``) whose rule judges answers; or
        threshold / calibration / spec / locator / metrics: the rule of a guard built here on
            ``torch_model`` (as for :class:`SpillGuard`); with none of threshold and calibration,
            the packaged calibration is found by the model's name or its fingerprint (its weights);
        name: the model's name in reports (default ``default_name``).
    """

    def __init__(
        self,
        torch_model: Any,
        tokenizer: Any,
        *,
        who: str,
        where: str,
        default_name: str,
        guard: SpillGuard | None = None,
        threshold: float | None = None,
        calibration: Any = None,
        spec: Any = None,
        locator: Any = None,
        name: str | None = None,
        metrics: Any = None,
    ):
        def build() -> SpillGuard:
            loaded = LoadedModel(
                model=torch_model,
                tokenizer=tokenizer,
                name=str(name or default_name),
                device=torch_model.device,
                dtype=torch_model.dtype,
            )
            return SpillGuard(
                SpillModel(loaded),
                threshold=threshold,
                calibration=calibration,
                spec=spec,
                locator=locator,
                metrics=metrics,
            )

        self.guard = resolve_guard(
            guard,
            who=who,
            build=build,
            threshold=threshold,
            calibration=calibration,
            spec=spec,
            locator=locator,
            other_rule_args={"name": name, "metrics": metrics},
        )
        if self.guard.rule.second_opinion is not None:
            raise InvalidParameterError(
                f"{who}: the guard's rule has a second opinion (samples where one pass is unsure), which a drop-in "
                "cannot draw: it observes generations the framework makes. Use a calibration without "
                "--second-opinion here, or guard through SpillGuard / SpillChatModel / the server, which sample."
            )
        if self.guard.model.loaded.model is not torch_model:
            raise InvalidParameterError(
                f"{who}: guard.model wraps another torch model than {where}; build the guard on that model, "
                f"SpillGuard(SpillModel(LoadedModel(model={where}, tokenizer=..., ...))), or pass "
                "threshold=/calibration= instead of guard=."
            )
        self.tokenizer = tokenizer
        self.recorder = GenerationRecorder.for_model(
            torch_model, tokenizer, betas=self.guard.model.betas, stats=self.guard.capture_stats, final_step="auto"
        )  # the guard never reads a textless stop token's Δ
        self._lock = threading.Lock()
        self._announced: dict[Hashable, _Announced] = {}
        plan = weakref.WeakMethod(self._plan)  # the recorder lives on the model: it must not keep this drop-in

        def planner(prompt_ids: list[int], max_new_tokens: int | None) -> Substitution | None:
            method = plan()
            return method(prompt_ids, max_new_tokens) if method is not None else None

        self._stop_planning = weakref.finalize(self, self.recorder.plan(planner))

    def close(self) -> None:
        """Stop regenerating retry attempts on the model (also done when this drop-in is collected)."""
        self._stop_planning()

    # -- announcing calls and claiming their rows -------------------------------------------------
    def expect(self, key: Hashable, prompt: Prompt, prompt_ids: Sequence[int], *, render: Render | None = None) -> None:
        """Announce that the framework will feed ``prompt_ids`` (its rendering of ``prompt``) for ``key``.

        Inside a retry attempt, the row is the attempt's: the strategy's ``next_attempt`` makes its
        prompt (fed as ``render(prompt)``, default ``prompt.ids``) and params from ``prompt`` and the
        call's greedy params. Call it in the thread that will generate when you can (the recorder's
        route 1); claim the row with :meth:`claim`, or :meth:`forget` it.
        """
        if not isinstance(prompt, Prompt):
            raise InvalidParameterError(f"expect needs the call's spill_guard Prompt, got {prompt!r}.")
        ids = tuple(int(i) for i in prompt_ids)
        announced = _Announced(ids, prompt, render or _core_render, current_attempt())
        with self._lock:
            self._announced[key] = announced
        try:
            self.recorder.expect(key, ids)
        except BaseException:
            with self._lock:
                self._announced.pop(key, None)
            raise

    def claim(self, key: Hashable, answer_text: str | None = None) -> Claim:
        """The recorded row of ``key`` (see :meth:`GenerationRecorder.claim`).

        A call announced inside a retry attempt only takes a row the attempt regenerated: a row
        generated as the framework asked (a generate call outside the attempt's context, e.g. a
        plain streaming thread) would be the first answer again under the attempt's name.
        """
        with self._lock:
            announced = self._announced.pop(key, None)
        claim = self.recorder.claim(key, answer_text)
        if (
            announced is not None
            and announced.attempt is not None
            and claim.answer is not None
            and not claim.answer.substituted
        ):
            return Claim(
                None,
                f"the {announced.attempt.name} attempt's generate call ran outside the attempt's "
                "context (e.g. in a plain thread of a streaming call), so it was generated as the "
                "framework asked, not as the attempt; retry with invoke() (no streaming)",
            )
        return claim

    def forget(self, key: Hashable) -> None:
        """Drop the announcement of ``key`` (the run failed or was abandoned)."""
        with self._lock:
            self._announced.pop(key, None)
        self.recorder.forget(key)

    @contextlib.contextmanager
    def regenerating(self, params: GenerationParams) -> Iterator[None]:
        """Run a block whose generate calls of this model sample with ``params`` (one row per call).

        The prompt stays what the framework feeds (ask the framework with the attempt's conversation);
        the budget is ``params.max_new_tokens``. Rows are recorded as usual (watch or expect them).
        """
        if not isinstance(params, GenerationParams):
            raise InvalidParameterError(f"regenerating needs GenerationParams, got {params!r}.")
        substitution_for(None, params)  # refuse what cannot be applied before the framework runs
        token = _REGENERATING.set((self, params))
        try:
            yield
        finally:
            _REGENERATING.reset(token)

    def regeneration(self) -> GenerationParams | None:
        """The params of the :meth:`regenerating` block this context is in (for this drop-in), else None."""
        regenerating = _REGENERATING.get()
        return regenerating[1] if regenerating is not None and regenerating[0] is self else None

    def _plan(self, prompt_ids: list[int], max_new_tokens: int | None) -> Substitution | None:
        """The recorder's planner: this context's regeneration of a row of this model, if any."""
        regenerating = self.regeneration()
        if regenerating is not None:
            return substitution_for(None, regenerating)
        attempt = current_attempt()
        if attempt is None:
            return None
        ids = tuple(prompt_ids)
        with self._lock:
            announced = next(
                (a for a in self._announced.values() if a.attempt is attempt and a.prompt_ids == ids), None
            )
        if announced is None:
            return None
        base = GenerationParams(max_new_tokens=max_new_tokens) if max_new_tokens is not None else GenerationParams()
        prompt, params = attempt.strategy.next_attempt(announced.prompt, base, attempt.number)
        return substitution_for(
            announced.render(prompt),
            params,
            keep_budget=max_new_tokens is None and params.max_new_tokens == base.max_new_tokens,
        )

    def scored(self, row: RecordedAnswer) -> ScoredAnswer:
        """The :class:`ScoredAnswer` of a recorded row (its trace read at the guard model's beta).

        Raises :class:`CaptureError` (the recorder's ``failure``) when the row's capture failed.
        """
        if row.trace is None:
            raise CaptureError(row.failure or "no trace was recorded")
        model = self.guard.model
        return build_scored_answer(
            tokenizer=model.tokenizer,
            model_name=model.loaded.name,
            prompt_ids=row.prompt_ids,
            trace=row.trace,
            stopped_on_eos=row.stopped_on_eos,
            beta=model.beta,
        )

    def judge(self, scored: ScoredAnswer, question: str, *, strategy: str = "greedy") -> Verdict:
        """The guard rule's verdict on ``scored`` (policy ``Flag()``: the answer is reported, never replaced)."""
        return self.guard.judge.decide(Generated(scored), question=question, policy=_FLAG, strategy=strategy)


def _core_render(prompt: Prompt) -> list[int]:
    return list(prompt.ids)
