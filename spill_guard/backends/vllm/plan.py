"""Turning spill_guard's generation settings into vLLM requests and their outputs into answers.

Shared by the offline (``vllm.LLM``) and the async (``AsyncLLM``) models: how a captured
request and its z_(T+1) follow-up are built, and how fetched values become a trace.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Collection, Sequence

from spill_guard.backends.vllm.reduce import Columns
from spill_guard.backends.vllm.requests import CaptureRequest, VLLM_STATS, check_capturable, penalties_in
from spill_guard.backends.vllm.traces import build_trace, sampled_logprobs
from spill_guard.capture.trace import TokenTrace
from spill_guard.errors import CaptureError, InvalidParameterError

#: SpillModel.generate keywords that only mean something to transformers' generate().
HF_ONLY = ("stopping_criteria", "length_limits", "logits_processor")


@dataclass(frozen=True)
class Sampling:
    """The sampling settings of one generate call, in spill_guard's (transformers') terms."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stats: str = "full"
    extra: tuple[tuple[str, Any], ...] = ()  # further vllm.SamplingParams fields, checked for capture

    @classmethod
    def from_kwargs(cls, *, max_new_tokens: int, do_sample: bool, seed: int | None, **kwargs: Any) -> "Sampling":
        for name in HF_ONLY:
            if kwargs.pop(name, None) not in (None, [], ()):
                raise InvalidParameterError(
                    f"{name} is a transformers generate() hook; the vLLM backend cannot run it inside vLLM's "
                    "sampler. Drop it (the guard's early_stop is not available on the vLLM backend)."
                )
        stats = kwargs.pop("stats", "full")
        if stats not in VLLM_STATS:
            raise InvalidParameterError(f"stats must be one of {list(VLLM_STATS)}, got {stats!r}.")
        known = {k: kwargs.pop(k) for k in ("temperature", "top_p", "top_k", "repetition_penalty") if k in kwargs}
        kwargs.pop("pad_token_id", None)
        return cls(max_new_tokens=max_new_tokens, do_sample=do_sample, seed=seed, stats=stats,
                   extra=tuple(sorted(kwargs.items())), **known)


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


def answer_params(sampling: Sampling, stop_token_ids: Sequence[int], key: str, *, chosen: str = "logprob") -> Any:
    """``SamplingParams`` of a captured answer request; refused if it cannot be captured exactly.

    ``chosen``: from :func:`chosen_source`.
    """
    from vllm import SamplingParams

    greedy = not sampling.do_sample
    params = SamplingParams(
        # One token more than asked: when the answer runs to max_new_tokens, the step that samples
        # the extra token computes z_(T+1) in the same request (a decode step), instead of a
        # follow-up request that re-prefills the answer's last KV block. record_output drops it.
        max_tokens=sampling.max_new_tokens + 1,
        temperature=0.0 if greedy else sampling.temperature,
        top_p=1.0 if greedy else sampling.top_p,
        top_k=(sampling.top_k or 0) if not greedy else 0,
        repetition_penalty=sampling.repetition_penalty or 1.0,
        seed=sampling.seed,
        logprobs=0 if chosen == "logprob" else None,  # the sampled token's raw log-probability
        stop_token_ids=list(stop_token_ids),
        skip_special_tokens=False,
        extra_args=CaptureRequest(key, sampling.stats, chosen=chosen).as_extra_args(),
        **dict(sampling.extra),
    )
    check_capturable(params)
    return params


def follow_up_params(stats: str, key: str, continues: str) -> Any:
    """One captured step after the answer: its logits are z_(T+1)."""
    from vllm import SamplingParams

    # only its log-partitions are read, never its chosen logit: no logprobs needed
    return SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True,
                          extra_args=CaptureRequest(key, stats, continues, chosen="max").as_extra_args())


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
        return build_trace(self.token_ids, self.logprobs, [*rows[:needed], *last[:1]], columns, vocab_size,
                           full=stats == "full", final_step=self.final_step)


def stopped_on_stop_token(planned: PlannedAnswer, stop_token_ids: Sequence[int]) -> bool:
    ids = planned.token_ids or []
    return planned.finish_reason == "stop" and bool(ids) and ids[-1] in set(stop_token_ids)
