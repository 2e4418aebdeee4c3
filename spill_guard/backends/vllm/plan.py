"""Turning spill_guard's generation settings into vLLM requests and their outputs into answers.

Shared by the offline (``vllm.LLM``) and the async (``AsyncLLM``) models: how a captured
request and its z_(T+1) follow-up are built, and how fetched values become a trace.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from spill_guard.backends.vllm.params import VllmParams
from spill_guard.backends.vllm.reduce import Columns
from spill_guard.backends.vllm.requests import CaptureRequest, check_capturable, penalties_in
from spill_guard.backends.vllm.traces import build_trace, sampled_logprobs
from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import CaptureError, InvalidParameterError
from spill_guard.models.params import GenerationParams


@dataclass(frozen=True)
class Sampling:
    """The vLLM sampling settings of one answer request (from its :class:`GenerationParams`)."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()  # further vllm.SamplingParams fields, checked for capture

    @classmethod
    def from_params(cls, params: GenerationParams, max_new_tokens: int) -> Sampling:
        """``params`` (a :class:`~spill_guard.backends.vllm.params.VllmParams` adds vLLM's own fields),
        with the budget cut to the context window."""
        vllm_only = params if isinstance(params, VllmParams) else None
        return cls(
            max_new_tokens=max_new_tokens,
            do_sample=not params.greedy,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=params.stop,
            top_k=vllm_only.top_k if vllm_only else None,
            repetition_penalty=vllm_only.repetition_penalty if vllm_only else None,
            extra=vllm_only.options if vllm_only else (),
        )


def new_key() -> str:
    return uuid.uuid4().hex


def chosen_source(sampling: Sampling, greedy_reads_max: bool) -> str:
    """Where the answer's chosen logits come from (:data:`~spill_guard.backends.vllm.requests.CHOSEN_SOURCES`).

    A greedy request without penalties on an engine where nothing else changes the argmax
    (``greedy_reads_max``) reads them from the captured row maximum, so vLLM skips its
    logprob path (a log-softmax, a rank count and a logprob object per token).
    """
    penalized = penalties_in({**dict(sampling.extra), "repetition_penalty": sampling.repetition_penalty})
    return "max" if greedy_reads_max and not sampling.do_sample and not penalized else "logprob"


def answer_params(
    sampling: Sampling, stop_token_ids: Sequence[int], key: str, *, stats: str | None = "full", chosen: str = "logprob"
) -> Any:
    """``SamplingParams`` of an answer request; refused if it cannot be captured exactly.

    ``stats``: the capture's statistics (``None``: a plain request, nothing captured);
    ``chosen``: from :func:`chosen_source`.
    """
    from vllm import SamplingParams

    greedy = not sampling.do_sample
    captured = stats is not None
    capture = CaptureRequest(key, stats, chosen=chosen).as_extra_args() if stats is not None else None
    try:
        params = SamplingParams(
            # One token more than asked: when the answer runs to max_new_tokens, the step that samples
            # the extra token computes z_(T+1) in the same request (a decode step), instead of a
            # follow-up request that re-prefills the answer's last KV block. record_output drops it.
            max_tokens=sampling.max_new_tokens + 1 if captured else sampling.max_new_tokens,
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=(sampling.top_k or 0) if not greedy else 0,
            repetition_penalty=sampling.repetition_penalty or 1.0,
            seed=sampling.seed,
            logprobs=0 if captured and chosen == "logprob" else None,  # the sampled token's raw log-probability
            stop_token_ids=list(stop_token_ids),
            stop=list(sampling.stop) or None,
            skip_special_tokens=False,
            extra_args=capture,
            **dict(sampling.extra),
        )
    except TypeError as exc:  # an option that is no SamplingParams field
        raise InvalidParameterError(f"vLLM refused the sampling options {dict(sampling.extra)}: {exc}") from None
    if captured:
        check_capturable(params)
    return params


def follow_up_params(stats: str, key: str, continues: str) -> Any:
    """One captured step after the answer: its logits are z_(T+1)."""
    from vllm import SamplingParams

    # only its log-partitions are read, never its chosen logit: no logprobs needed
    return SamplingParams(
        max_tokens=1,
        temperature=0.0,
        ignore_eos=True,
        extra_args=CaptureRequest(key, stats, continues, chosen="max").as_extra_args(),
    )


@dataclass
class PlannedAnswer:
    """One answer's keys and, once generated, its tokens and raw logprobs."""

    prompt: list[int]
    key: str
    follow_key: str
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None  # None when chosen == "max"
    chosen: str = "logprob"  # where the chosen logits come from (chosen_source)
    finish_reason: str | None = None
    follow_up: bool = True  # a z_(T+1) follow-up request is sent (see skip_follow_up)
    #: the answer request itself ran the step after its last kept token (it had max_new_tokens + 1)
    final_in_answer: bool = False

    def record_output(self, completion: Any, max_new_tokens: int) -> None:
        """Keep the first ``max_new_tokens`` tokens of a request made by :func:`answer_params`.

        A longer output means vLLM ran the step after token ``max_new_tokens``: its captured
        logits are z_(T+1), and the extra token (whatever ended it) is not part of the answer.
        """
        token_ids = list(completion.token_ids)
        logprobs = None if self.chosen == "max" else sampled_logprobs(token_ids, completion.logprobs)
        self.finish_reason = completion.finish_reason
        if len(token_ids) > max_new_tokens:
            token_ids = token_ids[:max_new_tokens]
            logprobs = None if logprobs is None else logprobs[:max_new_tokens]
            self.finish_reason, self.final_in_answer = "length", True
        self.token_ids, self.logprobs = token_ids, logprobs

    def skip_follow_up(self, stop_token_ids: Sequence[int], skip_after: Collection[int]) -> bool:
        """Decide (after generation) whether the z_(T+1) follow-up is skipped; True if it is.

        Skipped when the answer request already computed z_(T+1) (it ran to max_new_tokens), or
        when the answer ended on a stop token in ``skip_after`` (stop tokens without text;
        :mod:`spill_guard.capture.final_step`).
        """
        ids = self.token_ids or []
        textless_stop = stopped_on_stop_token(self, stop_token_ids) and ids[-1] in skip_after
        self.follow_up = not (self.final_in_answer or textless_stop)
        return not self.follow_up

    @property
    def final_step(self) -> bool:
        """z_(T+1) was captured (by the answer request or its follow-up)."""
        return self.final_in_answer or self.follow_up

    @property
    def follow_prompt(self) -> list[int]:
        return self.prompt + list(self.token_ids or [])

    def trace(self, fetched: dict[str, dict], columns: Columns, vocab_size: int, stats: str) -> TokenTrace:
        main, follow = fetched.get(self.key, {}), fetched.get(self.follow_key, {})
        # A skipped follow-up was never captured: the store's "never captured" answer for its key is expected.
        for part in (main, follow) if self.follow_up else (main,):
            if "error" in part:
                raise CaptureError(f"vLLM capture failed: {part['error']}")
        n = len(self.token_ids or [])
        rows, last = main.get("values", []), follow.get("values", [])
        needed = n + 1 if self.final_in_answer else n
        if len(rows) < needed or (self.follow_up and not last):
            raise CaptureError(
                f"vLLM capture holds {len(rows)} answer steps and {len(last)} follow-up steps for a {n}-token answer; "
                f"expected {needed} and {int(self.follow_up)}. Was the engine built with engine_kwargs()?"
            )
        return build_trace(
            self.token_ids or [],
            self.logprobs,
            [*rows[:needed], *last[:1]],
            columns,
            vocab_size,
            full=stats == "full",
            final_step=self.final_step,
        )


def stopped_on_stop_token(planned: PlannedAnswer, stop_token_ids: Sequence[int]) -> bool:
    ids = planned.token_ids or []
    return planned.finish_reason == "stop" and bool(ids) and ids[-1] in set(stop_token_ids)
