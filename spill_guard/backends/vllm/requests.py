"""Which vLLM requests can be captured exactly, and how a request asks for capture.

A request opts in through ``SamplingParams.extra_args["spill_guard"]`` (its capture key and
statistics mode); requests without it run as plain vLLM traffic. Settings that change the
logits *before* the capture processor sees them would make the "raw" values something else,
so such requests are refused, both in the client (before submission) and in the engine
(``validate_params``), with the reason. Pure Python: imported on both sides, needs no vllm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spill_guard.errors import InvalidParameterError

EXTRA_ARGS_KEY = "spill_guard"

#: Capture statistics on vLLM: "energy" (log-partitions; chosen logits come from raw logprobs)
#: or "full" (plus entropy and the JSD to the previous step).
VLLM_STATS = ("energy", "full")

#: Where a request's chosen logit z_t[x_t] comes from: "logprob" (vLLM returns the sampled token's
#: raw log-probability, ``logprobs=0``; z_t[x_t] = logprob + logsumexp) or "max" (a greedy request
#: without penalties samples the argmax of the raw logits, so z_t[x_t] = max_v z_t, which the
#: capture stores; vLLM then computes no logprobs at all).
CHOSEN_SOURCES = ("logprob", "max")

#: vLLM treats a temperature below this as greedy (its sampler's epsilon).
GREEDY_TEMPERATURE = 1e-5


class UnsupportedSamplingError(InvalidParameterError):
    """A vLLM request setting would alter the logits before capture, so its scores would not be raw."""


@dataclass(frozen=True)
class CaptureRequest:
    """What the capture processor reads from a request's ``extra_args``."""

    key: str
    stats: str = "energy"
    #: key of the request this one continues (the 1-token follow-up for z_(T+1)), for the JSD.
    continues: str | None = None
    chosen: str = "logprob"  # one of CHOSEN_SOURCES

    def as_extra_args(self) -> dict[str, Any]:
        return {
            EXTRA_ARGS_KEY: {"key": self.key, "stats": self.stats, "continues": self.continues, "chosen": self.chosen}
        }

    @classmethod
    def from_params(cls, params: Any) -> CaptureRequest | None:
        extra = getattr(params, "extra_args", None) or {}
        spec = extra.get(EXTRA_ARGS_KEY)
        if not spec:
            return None
        return cls(
            key=str(spec["key"]),
            stats=str(spec.get("stats", "energy")),
            continues=spec.get("continues"),
            chosen=str(spec.get("chosen", "logprob")),
        )


#: vLLM's penalty settings and the value at which each leaves the logits alone.
NEUTRAL_PENALTIES = {"repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


def penalties_in(settings: Mapping[str, Any]) -> list[str]:
    """``name=value`` for each penalty in ``settings`` that changes the logits (greedy requests too)."""
    return [
        f"{name}={settings[name]}"
        for name, neutral in NEUTRAL_PENALTIES.items()
        if settings.get(name) not in (None, neutral)
    ]


def penalized(params: Any) -> list[str]:
    """:func:`penalties_in` of a ``SamplingParams``."""
    return penalties_in({name: getattr(params, name, None) for name in NEUTRAL_PENALTIES})


def compromising_settings(params: Any, *, runner: str = "v1") -> list[str]:
    """Reasons why ``params`` (a ``SamplingParams``) would change logits before the capture.

    V1 runner order: allowed-token mask, bad words, min_tokens and logit_bias processors, then
    custom processors (ours), then penalties and temperature. V2 applies bias, penalties and
    bad words before custom processors, so penalties compromise the capture there too.
    """
    reasons = []
    if getattr(params, "logit_bias", None):
        reasons.append(f"logit_bias={params.logit_bias!r} is added to the logits before capture")
    if getattr(params, "allowed_token_ids", None):
        reasons.append("allowed_token_ids masks the logits before capture")
    if getattr(params, "bad_words", None):
        reasons.append(f"bad_words={params.bad_words!r} masks the logits before capture")
    if getattr(params, "structured_outputs", None) is not None:
        # the model runner applies the grammar bitmask to the logits before the sampler runs
        reasons.append("structured_outputs (guided decoding) masks the logits before capture")
    if (getattr(params, "min_tokens", 0) or 0) > 0:
        reasons.append(f"min_tokens={params.min_tokens} masks stop tokens before capture")
    if runner == "v2":
        reasons += [f"{p} is applied before capture on the V2 runner" for p in penalized(params)]
    spec = CaptureRequest.from_params(params)
    if spec is not None and spec.chosen == "max":
        # the sampled token is the raw argmax only without temperature sampling and penalties
        if (getattr(params, "temperature", 1.0) or 0.0) >= GREEDY_TEMPERATURE:
            reasons.append(f"chosen='max' needs a greedy request, got temperature={params.temperature}")
        reasons += [
            f"chosen='max' is wrong under {p} (the sampled token is not the raw argmax)" for p in penalized(params)
        ]
    elif getattr(params, "logprobs", None) is None:
        reasons.append(
            "logprobs is None; captured requests need logprobs>=0 (the sampled token's raw logprob) "
            "unless they are greedy without penalties and ask for chosen='max'"
        )
    return reasons


def check_capturable(params: Any, *, runner: str = "v1") -> None:
    """Raise :class:`UnsupportedSamplingError` naming every setting that compromises the capture."""
    spec = CaptureRequest.from_params(params)
    if spec is not None and spec.stats not in VLLM_STATS:
        raise UnsupportedSamplingError(f"spill_guard stats={spec.stats!r} is not one of {list(VLLM_STATS)}.")
    if spec is not None and spec.chosen not in CHOSEN_SOURCES:
        raise UnsupportedSamplingError(f"spill_guard chosen={spec.chosen!r} is not one of {list(CHOSEN_SOURCES)}.")
    reasons = compromising_settings(params, runner=runner)
    if reasons:
        raise UnsupportedSamplingError(
            "this request cannot be scored from raw logits: "
            + "; ".join(reasons)
            + ". Drop these settings for guarded requests (or send them without spill_guard capture)."
        )
