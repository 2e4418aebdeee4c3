"""``VllmParams``: :class:`~spill_guard.models.params.GenerationParams` plus vLLM-only sampling fields.

vLLM applies penalties and ``top_k`` after the capture processor has read the raw logits, so
they change which token is sampled, never the captured values; a backend-neutral caller has no
use for them, which is why they are not in :class:`GenerationParams`. ``options`` holds any
other ``vllm.SamplingParams`` field by name: each request is checked for settings that would
alter the logits before capture (``logit_bias``, ``min_tokens`` ...), and those are refused with
:class:`~spill_guard.backends.vllm.requests.UnsupportedSamplingError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spill_guard.errors import InvalidParameterError
from spill_guard.models.params import GenerationParams

#: SamplingParams fields the backend sets itself from GenerationParams and the capture.
_OWN_FIELDS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop",
        "stop_token_ids",
        "logprobs",
        "extra_args",
        "skip_special_tokens",
        "n",
    }
)


@dataclass(frozen=True)
class VllmParams(GenerationParams):
    """Generation settings of one vLLM request (a :class:`GenerationParams`, so every backend-neutral use works).

    Args:
        top_k: sample among the ``top_k`` most likely tokens (None: all).
        repetition_penalty: vLLM's repetition penalty (None or 1.0: none).
        options: further ``vllm.SamplingParams`` fields as ``(name, value)`` pairs.
    """

    top_k: int | None = None
    repetition_penalty: float | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        top_k, penalty = self.top_k, self.repetition_penalty
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
            raise InvalidParameterError(f"top_k must be an integer >= 0 or None, got {top_k!r}.")
        if penalty is not None and (
            isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not penalty > 0
        ):
            raise InvalidParameterError(f"repetition_penalty must be a number > 0 or None, got {penalty!r}.")
        names = [name for name, _ in self.options]
        own = sorted(set(names) & _OWN_FIELDS)
        if own:
            raise InvalidParameterError(
                f"options {own} are set from the GenerationParams and the capture; use "
                "max_new_tokens, temperature, top_p, seed and stop instead."
            )
        object.__setattr__(self, "options", tuple(sorted(self.options, key=lambda item: item[0])))

    @classmethod
    def from_options(cls, params: GenerationParams, options: Mapping[str, Any]) -> VllmParams:
        """``params`` with vLLM sampling fields by name (``top_k``, ``repetition_penalty``, other
        ``SamplingParams`` fields)."""
        rest = dict(options)
        known = {name: rest.pop(name) for name in ("top_k", "repetition_penalty") if name in rest}
        base = {f.name: getattr(params, f.name) for f in dataclasses.fields(GenerationParams)}
        if isinstance(params, VllmParams):
            known = {"top_k": params.top_k, "repetition_penalty": params.repetition_penalty, **known}
            rest = {**dict(params.options), **rest}
        return cls(**base, **known, options=tuple(rest.items()))
