"""``TransformersBackend``: the backend contract on a ``transformers`` model in this process.

Generation is one batched, left-padded ``model.generate`` with the streaming capture's forward
hook (:func:`~spill_guard.capture.streaming.generate_with_capture`): listeners see each token
while it is generated, and one stopping criterion (:class:`~.stopping.RowStops`) ends rows at
their own ``max_new_tokens``, on their text stop sequences or when a stop hook says so; the
capture's ``length_limits`` cuts each such row's trace where it ended, and the token after the
cut still gets its ``z_(T+1)`` from the batch's next decode step, so a row's values equal the
same prompt generated alone (up to float rounding of the padded batch). Seeded sampling draws
from a per-call generator (:class:`~spill_guard.models.seeding.SeededSampling`). Answers made
elsewhere get one teacher-forced pass. Every capability is available.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from spill_guard.backends.base import (
    Capabilities,
    Listener,
    PlainAnswer,
    StopHook,
    check_fits,
    check_prompts,
    check_stats,
    fit_budget,
    row_params,
)
from spill_guard.backends.transformers.stopping import RowStops
from spill_guard.capture.final_step import skip_ids_for
from spill_guard.capture.padding import left_pad
from spill_guard.capture.step_stats import validate_betas
from spill_guard.capture.streaming import generate_with_capture, stop_lengths
from spill_guard.capture.teacher_forced import teacher_forced_traces
from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.models.loader import LoadedModel, load_model
from spill_guard.models.params import GenerationParams
from spill_guard.models.seeding import SeededSampling
from spill_guard.report import ScoredAnswer, build_scored_answer

NAME = "transformers"


class TransformersBackend:
    """The backend contract over a :class:`~spill_guard.models.LoadedModel`.

    Args:
        loaded: model and tokenizer (:func:`spill_guard.load_model`).
        beta: the β of a result's per-token E/F/Δ lists.
        extra_betas: further β values to capture (1.0 is always captured).
    """

    name = NAME
    capabilities = Capabilities(
        streams_steps=True, stops_early=True, teacher_forcing=True, top_alternatives=True, per_row_seeds=True
    )

    def __init__(self, loaded: LoadedModel, *, beta: float = 1.0, extra_betas: Sequence[float] = ()):
        if not isinstance(loaded, LoadedModel):
            raise InvalidParameterError(
                f"TransformersBackend needs a LoadedModel (spill_guard.load_model), got {loaded!r}."
            )
        self.loaded = loaded
        self.betas = validate_betas((beta, *extra_betas))
        self.beta = float(beta)

    @classmethod
    def load(
        cls,
        name_or_path: str | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        beta: float = 1.0,
        extra_betas: Sequence[float] = (),
        engine_options: dict[str, Any] | None = None,
    ) -> TransformersBackend:
        """Load a model (default: the embedded SmolLM2-135M-Instruct); the registry's loader for ``"transformers"``."""
        if engine_options:
            raise InvalidParameterError(
                f"engine options {dict(engine_options)} are vLLM settings; the transformers "
                "backend takes none (use backend='vllm' or drop them)."
            )
        validate_betas((beta, *extra_betas))  # fail before the slow load
        return cls(load_model(name_or_path, device=device, dtype=dtype), beta=beta, extra_betas=extra_betas)

    def __repr__(self) -> str:
        return f"TransformersBackend({self.loaded.name!r}, betas={list(self.betas)})"

    # -- generation ------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: GenerationParams | Sequence[GenerationParams],
        *,
        listeners: Sequence[Listener] = (),
        stop_hooks: Sequence[StopHook] = (),
        stats: str | None = "full",
        final_step: str = "always",
    ) -> list[Any]:
        """See :meth:`spill_guard.backends.base.Backend.generate`.

        The rows of one call are one batch, so they must share ``temperature`` and ``top_p`` (greedy
        rows: only greedy); ``max_new_tokens``, ``stop`` and ``seed`` may differ per row. Rows that all
        have the same seed share the call's generator; rows with different seeds each draw from their
        own (:meth:`SeededSampling.per_row`), as they would generated alone.
        """
        batch = check_prompts(prompts)
        rows = row_params(params, len(batch))
        stats = check_stats(stats)
        skip_after = skip_ids_for(final_step, self.loaded.tokenizer, self.loaded.stop_token_ids)
        if stats is None and listeners:
            raise InvalidParameterError(
                "listeners receive captured energies; generate with stats='full' or 'energy', "
                "or drop the listeners (stats=None generates without capture)."
            )
        sampling = _shared_sampling(rows)
        longest = max(len(p) for p in batch)
        budgets = [fit_budget(self.loaded.context_window, longest, p.max_new_tokens) for p in rows]
        loaded = self.loaded
        input_ids, mask, _ = left_pad(batch, loaded.pad_token_id, loaded.device)
        stops = RowStops(
            budgets=budgets,
            stops=[p.stop for p in rows],
            hooks=stop_hooks,
            prompt_length=int(input_ids.shape[1]),
            tokenizer=loaded.tokenizer,
            stop_token_ids=loaded.stop_token_ids,
        )
        options: dict[str, Any] = {
            "max_new_tokens": max(budgets),
            "pad_token_id": loaded.pad_token_id,
            "do_sample": not sampling.greedy,
        }
        if not sampling.greedy:
            options.update(temperature=sampling.temperature, top_p=sampling.top_p)
        seeds = [p.seed for p in rows]
        seeded = None
        if not sampling.greedy and any(seed is not None for seed in seeds):
            seeded = SeededSampling.per_row(seeds)
        if seeded is not None:  # a per-call generator: repeatable even while other threads sample
            options.update(seeded.generate_kwargs({}))
        # After the seeded window's own criterion: hooks run outside the window of seeded draws.
        options["stopping_criteria"] = [*options.get("stopping_criteria", ()), stops]
        with seeded or contextlib.nullcontext():
            if stats is None:
                return self._plain(batch, input_ids, mask, stops, options)
            captured = generate_with_capture(
                loaded.model,
                input_ids,
                mask,
                stop_token_ids=loaded.stop_token_ids,
                betas=self.betas,
                listeners=listeners,
                length_limits=lambda: stops.limits,
                stats=stats,
                skip_final_step_after=skip_after,
                **options,
            )
        return [
            self._report(p, trace, stopped)
            for p, trace, stopped in zip(batch, captured.traces, captured.stopped_on_eos)
        ]

    @torch.no_grad()
    def _plain(
        self,
        batch: list[list[int]],
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        stops: RowStops,
        options: dict[str, Any],
    ) -> list[PlainAnswer]:
        loaded = self.loaded
        sequences = loaded.model.generate(
            input_ids=input_ids, attention_mask=mask, eos_token_id=loaded.stop_token_ids, **options
        )
        generated = sequences[:, input_ids.shape[1] :]
        lengths, stopped = stop_lengths(generated, loaded.stop_token_ids)
        out = []
        for i, prompt in enumerate(batch):
            limit = stops.limits[i]
            length = lengths[i] if limit is None else min(limit, lengths[i])
            ids = [int(t) for t in generated[i, :length].tolist()]
            out.append(
                PlainAnswer(
                    prompt_ids=prompt,
                    answer_ids=ids,
                    answer=loaded.tokenizer.decode(ids, skip_special_tokens=True),
                    stopped_on_eos=stopped[i] and length == lengths[i],
                )
            )
        return out

    # -- teacher forcing -------------------------------------------------------------------------
    def score(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[ScoredAnswer]:
        """Teacher-forced scores of ``(prompt_ids, answer_ids)`` pairs, in one batched pass."""
        if len(prompts) != len(answers):
            raise InvalidInputError(
                f"got {len(prompts)} prompts but {len(answers)} answers; pass one answer per prompt."
            )
        for p, a in zip(prompts, answers):
            check_fits(self.loaded.context_window, len(p) + len(a))
        traces = teacher_forced_traces(
            self.loaded.model,
            [list(p) for p in prompts],
            [list(a) for a in answers],
            pad_token_id=self.loaded.pad_token_id,
            betas=self.betas,
        )
        stop = set(self.loaded.stop_token_ids)
        return [self._report(list(p), t, bool(len(a)) and a[-1] in stop) for p, a, t in zip(prompts, answers, traces)]

    def _report(self, prompt: list[int], trace: Any, stopped: bool) -> ScoredAnswer:
        return build_scored_answer(
            tokenizer=self.loaded.tokenizer,
            model_name=self.loaded.name,
            prompt_ids=prompt,
            trace=trace,
            stopped_on_eos=stopped,
            beta=self.beta,
        )


def _shared_sampling(rows: Sequence[GenerationParams]) -> GenerationParams:
    """The sampling settings every row of one batched ``generate`` shares (refused if they differ)."""
    first = rows[0]

    def key(p: GenerationParams) -> tuple:
        return ("greedy",) if p.greedy else ("sample", p.temperature, p.top_p)

    different = sorted({str(key(p)) for p in rows if key(p) != key(first)})
    if different:
        raise InvalidParameterError(
            f"the rows of one transformers generate call share their sampling settings, got {key(first)} and "
            f"{', '.join(different)} (temperature, top_p); generate them in separate calls. "
            "max_new_tokens, stop and seed may differ per row."
        )
    return first
