"""``SpillModel`` and ``AsyncSpillModel``: a model that generates answers and scores them from raw logits.

This is the core entry point below the guard: question(s) in, :class:`ScoredAnswer` out. Both
are facades over a backend (:mod:`spill_guard.backends.base`): they turn questions into prompt
ids (instruction, system message, chat template) and hand ids and frozen
:class:`~spill_guard.models.params.GenerationParams` to the backend, which generates and
captures. Neither is meant to be subclassed: a new engine is a new backend
(:func:`~spill_guard.backends.registry.register_backend`), and what it can do is read from its
capabilities (:meth:`SpillModel.require`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from spill_guard.backends.base import (
    TEACHER_FORCING,
    AsyncBackend,
    Backend,
    Capabilities,
    Listener,
    StopHook,
    require,
)
from spill_guard.backends.bridge import async_view, sync_view
from spill_guard.backends.legacy import legacy_request
from spill_guard.backends.registry import DEFAULT_ASYNC_BACKEND, DEFAULT_BACKEND, load_async_backend, load_backend
from spill_guard.capture.step_stats import validate_betas
from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.models.loader import LoadedModel
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import DEFAULT_INSTRUCTION, check_text, prompt_ids
from spill_guard.report import ScoredAnswer


class _Facade:
    """What both facades share: the backend, the prompt settings, and the model facts read through them."""

    _backend: Any

    def _set_prompting(self, instruction: str | None, system: str | None) -> None:
        self.instruction = instruction
        self.system = system

    @property
    def backend(self) -> Any:
        """The backend that generates (and, where it can, teacher-forces)."""
        return self._backend

    @property
    def capabilities(self) -> Capabilities:
        return self._backend.capabilities

    @property
    def loaded(self) -> Any:
        """Tokenizer, stop tokens, pad token, context window and name of the model."""
        return self._backend.loaded

    @property
    def tokenizer(self) -> Any:
        return self._backend.loaded.tokenizer

    @property
    def betas(self) -> tuple[float, ...]:
        """The captured inverse temperatures (1.0 always among them)."""
        return self._backend.betas

    @property
    def beta(self) -> float:
        """The β of a result's per-token E/F/Δ lists."""
        return self._backend.beta

    @property
    def streams_during_generation(self) -> bool:
        """Listeners see each step while ``generate`` runs (else they are replayed after it)."""
        return self.capabilities.streams_steps

    def require(self, capability: str, needed_for: str) -> None:
        """Raise :class:`~spill_guard.backends.base.UnsupportedCapabilityError` unless the backend has
        ``capability`` (a :class:`~spill_guard.backends.base.Capabilities` field name)."""
        require(self._backend, capability, needed_for)

    def prompt_ids(self, question: str, *, context: str | None = None) -> list[int]:
        """The exact token ids the model is fed for ``question``."""
        return prompt_ids(self.tokenizer, question, context=context, system=self.system, instruction=self.instruction)

    def close(self) -> None:
        """Release the backend's engine, where it holds one (vLLM); nothing for in-process weights."""
        close = getattr(self._backend, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._backend!r})"


class SpillModel(_Facade):
    """Generate-and-score facade over a synchronous backend.

    Args:
        backend: a :class:`~spill_guard.backends.base.Backend`, or a
            :class:`~spill_guard.models.LoadedModel` (then a transformers backend over it is built,
            with ``beta`` and ``extra_betas``).
        beta: inverse temperature of the per-token E/F/Δ lists in results (with a LoadedModel).
        extra_betas: further β values to capture, for scoring at several temperatures later (with a LoadedModel).
        instruction: appended to each question (default ``"Answer briefly."``; ``None`` for none).
        system: optional system message for chat templates.
    """

    def __init__(
        self,
        backend: Backend | LoadedModel,
        *,
        beta: float = 1.0,
        extra_betas: Sequence[float] = (),
        instruction: str | None = DEFAULT_INSTRUCTION,
        system: str | None = None,
    ):
        if isinstance(backend, LoadedModel):
            from spill_guard.backends.transformers.backend import TransformersBackend

            backend = TransformersBackend(backend, beta=beta, extra_betas=extra_betas)
        elif not isinstance(backend, Backend) or _is_async(backend):
            raise InvalidParameterError(
                f"SpillModel needs a synchronous backend or a LoadedModel, got {backend!r} "
                "(an async backend goes in AsyncSpillModel)."
            )
        elif beta != 1.0 or tuple(extra_betas):
            raise InvalidParameterError(
                "beta and extra_betas belong to the backend when one is given; build it with "
                "them (e.g. TransformersBackend(loaded, beta=..., extra_betas=...))."
            )
        self._backend = backend
        self._set_prompting(instruction, system)

    @classmethod
    def load(
        cls,
        name_or_path: str | None = None,
        *,
        backend: str = DEFAULT_BACKEND,
        device: str = "auto",
        dtype: str = "auto",
        beta: float = 1.0,
        extra_betas: Sequence[float] = (),
        instruction: str | None = DEFAULT_INSTRUCTION,
        system: str | None = None,
        engine_options: dict[str, Any] | None = None,
    ) -> SpillModel:
        """Load a model (default: the embedded SmolLM2-135M-Instruct) on ``backend`` (a registered name).

        ``backend="vllm"`` generates on vLLM (docs/vllm.md; ``engine_options`` go to ``vllm.LLM``).
        """
        validate_betas((beta, *extra_betas))  # fail before the slow load
        loaded = load_backend(
            backend,
            name_or_path,
            device=device,
            dtype=dtype,
            beta=beta,
            extra_betas=extra_betas,
            engine_options=engine_options,
        )
        return cls(loaded, instruction=instruction, system=system)

    def asynchronous(self) -> AsyncSpillModel:
        """This model as an :class:`AsyncSpillModel` (same backend and prompting; see
        :mod:`spill_guard.backends.bridge`): its calls run in one worker thread of their own, in order.
        Over an async engine's synchronous view, the async engine itself."""
        return AsyncSpillModel(async_view(self._backend), instruction=self.instruction, system=self.system)

    # -- generation ------------------------------------------------------------------------------
    def generate_params(
        self,
        prompts: Sequence[Sequence[int]],
        params: GenerationParams | Sequence[GenerationParams],
        *,
        listeners: Sequence[Listener] = (),
        stop_hooks: Sequence[StopHook] = (),
        stats: str | None = "full",
        final_step: str = "always",
    ) -> list[Any]:
        """Generate one answer per prompt (token ids) with frozen ``params`` (one, or one per prompt).

        The backend contract's call (:meth:`spill_guard.backends.base.Backend.generate`):
        ``listeners`` see each token's :class:`~spill_guard.capture.TokenStep`; ``stop_hooks``
        end rows early (backends that :attr:`~spill_guard.backends.base.Capabilities.stops_early`);
        ``stats=None`` returns unscored :class:`~spill_guard.backends.base.PlainAnswer` s.
        """
        return self._backend.generate(
            prompts, params, listeners=listeners, stop_hooks=stop_hooks, stats=stats, final_step=final_step
        )

    def generate(
        self,
        questions: str | Sequence[str],
        *,
        contexts: Sequence[str | None] | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Iterable[str] = (),
        listeners: Sequence[Listener] = (),
        stats: str = "full",
        final_step: str = "always",
        stopping_criteria: Iterable[Callable[..., Any]] | None = None,
        **engine_options: Any,
    ) -> list[ScoredAnswer]:
        """Answer each question and score the answer while it is generated.

        Greedy by default; ``do_sample=True`` samples (``seed`` makes it repeatable). Scores
        always use the model's raw logits, whatever the sampling settings. ``stats="energy"``
        is the cheaper capture without entropy/JSD (entropy-based baselines are then left out
        of ``pooled``). ``engine_options``: sampling settings only one engine has (vLLM:
        ``top_k``, ``repetition_penalty``, other ``SamplingParams`` fields); the transformers
        backend takes none.
        """
        batch = [questions] if isinstance(questions, str) else list(questions)
        if not batch:
            raise InvalidInputError("no questions given; pass a string or a non-empty list of strings.")
        ctx = list(contexts) if contexts is not None else [None] * len(batch)
        if len(ctx) != len(batch):
            raise InvalidInputError(f"{len(batch)} questions but {len(ctx)} contexts; pass one context per question.")
        ids = [self.prompt_ids(q, context=c) for q, c in zip(batch, ctx)]
        return self.generate_from_ids(
            ids,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=stop,
            listeners=listeners,
            stats=stats,
            final_step=final_step,
            stopping_criteria=stopping_criteria,
            **engine_options,
        )

    def generate_from_ids(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Iterable[str] = (),
        final_step: str = "always",
        listeners: Sequence[Listener] = (),
        stop_hooks: Sequence[StopHook] = (),
        stats: str = "full",
        stopping_criteria: Iterable[Callable[..., Any]] | None = None,
        length_limits: Callable[[], Sequence[int | None]] | None = None,
        stop_strings: Iterable[str] | None = None,
        tokenizer: Any = None,
        **engine_options: Any,
    ) -> list[ScoredAnswer]:
        """Like :meth:`generate` for prompts that are already token ids (the keyword form of
        :meth:`generate_params`; being replaced by it).

        ``final_step="auto"`` skips the extra forward step for ``z_{T+1}`` when the answer
        ended on a stop token without text, whose Δ no answer span reads (the guard's setting;
        :mod:`spill_guard.capture.final_step`); that token's Δ is then NaN. ``"always"``
        (default) computes every token's Δ. ``stop`` / ``stop_strings``: text stop sequences.
        ``stop_hooks``: as for :meth:`generate_params`. ``stopping_criteria``: transformers-style
        ``criterion(input_ids, scores)`` callables, run as one stop hook; a row one of them ends
        is cut there, so ``length_limits`` (kept for old callers) adds nothing and is not read;
        nor is ``tokenizer`` (the model's is used).
        """
        params, hooks = legacy_request(
            self._backend,
            prompts,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=(*tuple(stop), *tuple(stop_strings or ())),
            stopping_criteria=stopping_criteria,
            engine_options=engine_options,
        )
        return self.generate_params(
            prompts, params, listeners=listeners, stop_hooks=[*stop_hooks, *hooks], stats=stats, final_step=final_step
        )

    # -- teacher forcing -------------------------------------------------------------------------
    def score_answer(self, question: str, answer: str, *, context: str | None = None) -> ScoredAnswer:
        """Score an answer produced elsewhere for ``question`` (one teacher-forced pass)."""
        if not isinstance(answer, str) or not answer:
            raise InvalidInputError(f"the answer is empty ({answer!r}); pass the text to score.")
        check_text(answer, "answer")
        self.require(TEACHER_FORCING, "scoring an answer made elsewhere (score_answer)")
        answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        return self.score_ids([self.prompt_ids(question, context=context)], [answer_ids])[0]

    def score_ids(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[ScoredAnswer]:
        """Teacher-forced scores of ``(prompt_ids, answer_ids)`` pairs, in one batched pass."""
        self.require(TEACHER_FORCING, "scoring an answer made elsewhere (score_ids)")
        return self._backend.score(prompts, answers)


class AsyncSpillModel(_Facade):
    """Generate-and-score facade over an :class:`~spill_guard.backends.base.AsyncBackend`, for event loops.

    Many calls may be in flight at once; on vLLM they share its continuous batching, and a
    cancelled call aborts its requests. Arguments as for :class:`SpillModel` (a backend only).
    """

    def __init__(
        self, backend: AsyncBackend, *, instruction: str | None = DEFAULT_INSTRUCTION, system: str | None = None
    ):
        if not isinstance(backend, AsyncBackend) or not _is_async(backend):
            raise InvalidParameterError(
                f"AsyncSpillModel needs an async backend (load_async_backend), got {backend!r}."
            )
        self._backend = backend
        self._set_prompting(instruction, system)

    @classmethod
    def load(
        cls,
        name_or_path: str | None = None,
        *,
        backend: str = DEFAULT_ASYNC_BACKEND,
        device: str = "auto",
        dtype: str = "auto",
        beta: float = 1.0,
        extra_betas: Sequence[float] = (),
        instruction: str | None = DEFAULT_INSTRUCTION,
        system: str | None = None,
        engine_options: dict[str, Any] | None = None,
    ) -> AsyncSpillModel:
        """Load a model on ``backend``'s async engine (only vLLM has one)."""
        validate_betas((beta, *extra_betas))
        loaded = load_async_backend(
            backend,
            name_or_path,
            device=device,
            dtype=dtype,
            beta=beta,
            extra_betas=extra_betas,
            engine_options=engine_options,
        )
        return cls(loaded, instruction=instruction, system=system)

    def synchronous(self) -> SpillModel:
        """This model as a :class:`SpillModel` (same backend and prompting; see
        :mod:`spill_guard.backends.bridge`). Its calls are made from threads other than the event
        loop's and run on the loop bound with ``model.backend.bind(loop)``; a guard over it (e.g. a
        server's) decides and retries from such threads."""
        return SpillModel(sync_view(self._backend), instruction=self.instruction, system=self.system)

    async def generate_params(
        self,
        prompts: Sequence[Sequence[int]],
        params: GenerationParams | Sequence[GenerationParams],
        *,
        listeners: Sequence[Listener] = (),
        stop_hooks: Sequence[StopHook] = (),
        stats: str | None = "full",
        final_step: str = "always",
    ) -> list[Any]:
        """:meth:`SpillModel.generate_params`, awaited."""
        return await self._backend.generate(
            prompts, params, listeners=listeners, stop_hooks=stop_hooks, stats=stats, final_step=final_step
        )

    async def generate(
        self,
        question: str,
        *,
        context: str | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Iterable[str] = (),
        stats: str = "full",
        final_step: str = "always",
        **engine_options: Any,
    ) -> ScoredAnswer:
        """One scored answer to ``question`` (keyword form; see :meth:`SpillModel.generate`)."""
        return await self.generate_from_ids(
            self.prompt_ids(question, context=context),
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=stop,
            stats=stats,
            final_step=final_step,
            **engine_options,
        )

    async def generate_from_ids(
        self,
        prompt: Sequence[int],
        *,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Iterable[str] = (),
        stats: str = "full",
        final_step: str = "always",
        **engine_options: Any,
    ) -> ScoredAnswer:
        """One scored answer to one prompt's ids (the keyword form of :meth:`generate_params`, being replaced by it)."""
        if isinstance(prompt, (str, bytes)) or not prompt:
            raise InvalidInputError("the prompt has no tokens; pass a non-empty list of token ids.")
        params, _ = legacy_request(
            self._backend,
            [prompt],
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=tuple(stop),
            stopping_criteria=None,
            engine_options=engine_options,
        )
        [answer] = await self.generate_params([prompt], params, stats=stats, final_step=final_step)
        return answer

    async def score_ids(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[ScoredAnswer]:
        self.require(TEACHER_FORCING, "scoring an answer made elsewhere (score_ids)")
        return await self._backend.score(prompts, answers)

    def shutdown(self) -> None:
        """:meth:`close` (the name the server calls; being replaced by it)."""
        self.close()


def _is_async(backend: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(getattr(backend, "generate", None))


__all__ = ["AsyncSpillModel", "SpillModel"]
