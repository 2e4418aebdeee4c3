"""``SpillModel``: a loaded model that generates answers and scores them from raw logits.

This is the core entry point below the guard: question(s) in, :class:`ScoredAnswer` out.
Generation is batched with left padding; every answer is scored from the same pass that
produced it (streaming capture), or from one teacher-forced pass for answers made elsewhere.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Sequence

from spill_guard.capture.final_step import skip_ids_for
from spill_guard.capture.padding import left_pad
from spill_guard.capture.step_stats import validate_betas
from spill_guard.capture.streaming import generate_with_capture
from spill_guard.capture.teacher_forced import teacher_forced_traces
from spill_guard.errors import InvalidInputError, InvalidParameterError, PromptTooLongError
from spill_guard.models.loader import LoadedModel, load_model
from spill_guard.models.prompting import DEFAULT_INSTRUCTION, check_text, prompt_ids
from spill_guard.models.seeding import SeededSampling
from spill_guard.report import ScoredAnswer, build_scored_answer


class SpillModel:
    """Generate-and-score wrapper around a :class:`LoadedModel`.

    Args:
        loaded: the model and tokenizer (see :func:`spill_guard.load_model`).
        beta: inverse temperature of the per-token E/F/Δ lists in results.
        extra_betas: further β values to capture, for scoring at several temperatures later.
        instruction: appended to each question (default ``"Answer briefly."``; ``None`` for none).
        system: optional system message for chat templates.
    """

    #: Listeners see each step while ``generate`` runs, and stopping criteria can end it early
    #: (a backend that replays its steps after generating sets this to False).
    streams_during_generation = True

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        beta: float = 1.0,
        extra_betas: Sequence[float] = (),
        instruction: str | None = DEFAULT_INSTRUCTION,
        system: str | None = None,
    ):
        self.loaded = loaded
        self.betas = validate_betas((beta, *extra_betas))
        self.beta = float(beta)
        self.instruction = instruction
        self.system = system

    @classmethod
    def load(cls, name_or_path: str | None = None, *, device: str = "auto", dtype: str = "auto",
             backend: str = "transformers", **kwargs: Any) -> "SpillModel":
        """Load a model (default: the embedded SmolLM2-135M-Instruct) and wrap it.

        ``backend="vllm"`` returns a :class:`~spill_guard.backends.vllm.VllmSpillModel` (same API,
        generation on vLLM; docs/vllm.md).
        """
        if backend != "transformers":
            from spill_guard.backends import load_spill_model

            return load_spill_model(name_or_path, backend=backend, device=device, dtype=dtype, **kwargs)
        validate_betas((kwargs.get("beta", 1.0), *kwargs.get("extra_betas", ())))  # fail before the slow load
        return cls(load_model(name_or_path, device=device, dtype=dtype), **kwargs)

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    def prompt_ids(self, question: str, *, context: str | None = None) -> list[int]:
        """The exact token ids the model is fed for ``question``."""
        return prompt_ids(
            self.tokenizer, question, context=context, system=self.system, instruction=self.instruction
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
        **generate_kwargs: Any,
    ) -> list[ScoredAnswer]:
        """Answer each question and score the answer while it is generated.

        Greedy by default; ``do_sample=True`` samples (``seed`` makes it repeatable). Scores
        always use the model's raw logits, whatever the sampling settings. Pass
        ``stats="energy"`` for the cheaper capture without entropy/JSD (entropy-based
        baselines are then left out of ``pooled``).
        """
        batch = [questions] if isinstance(questions, str) else list(questions)
        if not batch:
            raise InvalidInputError("no questions given; pass a string or a non-empty list of strings.")
        ctx = list(contexts) if contexts is not None else [None] * len(batch)
        if len(ctx) != len(batch):
            raise InvalidInputError(f"{len(batch)} questions but {len(ctx)} contexts; pass one context per question.")
        ids = [self.prompt_ids(q, context=c) for q, c in zip(batch, ctx)]
        return self.generate_from_ids(
            ids, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
            top_p=top_p, seed=seed, **generate_kwargs,
        )

    def generate_from_ids(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        seed: int | None = None,
        final_step: str = "always",
        **generate_kwargs: Any,
    ) -> list[ScoredAnswer]:
        """Like :meth:`generate` for prompts that are already token ids.

        ``final_step="auto"`` skips the extra forward step for ``z_{T+1}`` when the answer
        ended on a stop token without text, whose Δ no answer span reads (the guard's setting;
        :mod:`spill_guard.capture.final_step`); that token's Δ is then NaN. ``"always"``
        (default) computes every token's Δ.
        """
        skip_after = skip_ids_for(final_step, self.tokenizer, self.loaded.stop_token_ids)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InvalidParameterError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}.")
        max_new_tokens = self._fit_context(prompts, max_new_tokens)
        input_ids, mask, _ = left_pad(prompts, self.loaded.pad_token_id, self.loaded.device)
        if not do_sample:  # greedy: drop sampling knobs so generate() does not warn about them
            generate_kwargs.pop("temperature", None)
            generate_kwargs.pop("top_p", None)
        seeded = SeededSampling(seed) if seed is not None else None  # checks the seed (type and range)
        if seeded is not None:  # a per-call generator: repeatable even while other threads sample
            generate_kwargs = seeded.generate_kwargs(generate_kwargs)
        with seeded or contextlib.nullcontext():
            captured = generate_with_capture(
                self.loaded.model,
                input_ids,
                mask,
                stop_token_ids=self.loaded.stop_token_ids,
                betas=self.betas,
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                pad_token_id=self.loaded.pad_token_id,
                skip_final_step_after=skip_after,
                **generate_kwargs,
            )
        return [
            self._report(list(p), trace, stopped)
            for p, trace, stopped in zip(prompts, captured.traces, captured.stopped_on_eos)
        ]

    def score_answer(self, question: str, answer: str, *, context: str | None = None) -> ScoredAnswer:
        """Score an answer produced elsewhere for ``question`` (one teacher-forced pass)."""
        if not isinstance(answer, str) or not answer:
            raise InvalidInputError(f"the answer is empty ({answer!r}); pass the text to score.")
        check_text(answer, "answer")
        answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        return self.score_ids([self.prompt_ids(question, context=context)], [answer_ids])[0]

    def score_ids(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[ScoredAnswer]:
        """Teacher-forced scores of ``(prompt_ids, answer_ids)`` pairs, in one batched pass."""
        for p, a in zip(prompts, answers):
            self._check_fits(len(p) + len(a))
        traces = teacher_forced_traces(
            self.loaded.model,
            [list(p) for p in prompts],
            [list(a) for a in answers],
            pad_token_id=self.loaded.pad_token_id,
            betas=self.betas,
        )
        stop = set(self.loaded.stop_token_ids)
        return [self._report(list(p), t, bool(len(a)) and a[-1] in stop) for p, a, t in zip(prompts, answers, traces)]

    # -- helpers -------------------------------------------------------------------------
    def _report(self, prompt: list[int], trace: Any, stopped: bool) -> ScoredAnswer:
        return build_scored_answer(
            tokenizer=self.tokenizer, model_name=self.loaded.name, prompt_ids=prompt,
            trace=trace, stopped_on_eos=stopped, beta=self.beta,
        )

    def _check_fits(self, n_tokens: int) -> None:
        window = self.loaded.context_window
        if n_tokens >= window:
            raise PromptTooLongError(
                f"{n_tokens} tokens do not fit the model's context window of {window} (one more position "
                "is needed to score the last token); shorten the question or its context."
            )

    def _fit_context(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> int:
        longest = max(len(p) for p in prompts)
        if min(len(p) for p in prompts) == 0:
            raise InvalidInputError("a prompt has no tokens; pass a non-empty question.")
        self._check_fits(longest + 1)
        room = self.loaded.context_window - longest - 1  # keep a position for z_(T+1)
        if max_new_tokens > room:
            warnings.warn(f"max_new_tokens={max_new_tokens} cut to {room} to fit the context window.", stacklevel=3)
        return min(max_new_tokens, room)
