"""``GenerationParams``: what one generation call is asked to do, as one frozen value.

Every door (the library guard, the server, the LangChain and LlamaIndex classes) turns its
own options into a :class:`GenerationParams`, and every backend reads only this object: no
``**kwargs`` travel from a door to an engine, so an option one engine does not know can
never leak into another's sampling settings. Retry strategies derive the params of their
next attempt from it (:meth:`GenerationParams.sampled`, :meth:`GenerationParams.greedy_copy`),
and :func:`retry_seed` is the one rule for a resampled attempt's seed.

``temperature == 0`` means greedy decoding (``top_p`` and ``seed`` are then ignored by the
engine but kept, so a retry can derive its seed from the call's). ``stop`` holds text stop
sequences (OpenAI's / LangChain's ``stop``): generation of a row ends on the token that
completes one, and :func:`spill_guard.models.stops.cut_at_stop` cuts the returned text.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field

from spill_guard.errors import InvalidParameterError
from spill_guard.models.prompting import check_text
from spill_guard.models.seeding import SEED_MAX, check_seed


@dataclass(frozen=True)
class GenerationParams:
    """Frozen generation settings of one call (one attempt of one answer).

    Args:
        max_new_tokens: generation budget, an integer >= 1.
        temperature: 0 (default) decodes greedily; > 0 samples.
        top_p: nucleus sampling mass in (0, 1] (sampling only).
        seed: makes sampling repeatable; an integer in [0, 2**63 - 1] or None.
        stop: text stop sequences (strings; empty ones mean nothing and are dropped).
    """

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InvalidParameterError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}.")
        temperature = _real(self.temperature, "temperature")
        if temperature < 0:
            raise InvalidParameterError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}.")
        top_p = _real(self.top_p, "top_p")
        if not 0 < top_p <= 1:
            raise InvalidParameterError(
                f"top_p must be in (0, 1], got {self.top_p!r}; 1.0 keeps the whole distribution."
            )
        check_seed(self.seed)
        stops = _stops(self.stop)
        object.__setattr__(self, "temperature", temperature)
        object.__setattr__(self, "top_p", top_p)
        object.__setattr__(self, "stop", stops)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def greedy_copy(self) -> GenerationParams:
        """These params decoding greedily (budget, stops and seed kept)."""
        return dataclasses.replace(self, temperature=0.0, top_p=1.0)

    def sampled(self, temperature: float, top_p: float, seed: int | None) -> GenerationParams:
        """These params sampling at ``temperature`` / ``top_p`` with ``seed`` (budget and stops kept)."""
        return dataclasses.replace(self, temperature=temperature, top_p=top_p, seed=seed)

    @property
    def strategy(self) -> str:
        """How a first answer made with these params is named in a verdict's attempts."""
        return "greedy" if self.greedy else "sample"


def retry_seed(base: int | None, attempt: int) -> int:
    """The seed of retry ``attempt`` (2, 3, ...) resampling from a call seeded ``base`` (``None``: 0).

    The one seed rule of every door: ``(base + attempt) mod 2**63``, so the same question with
    the same settings repeats its retries, and attempts of one call never share a seed.
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise InvalidParameterError(f"attempt must be an integer >= 1, got {attempt!r}.")
    return offset_seed(base or 0, attempt)


def offset_seed(seed: int, offset: int) -> int:
    """``seed + offset`` wrapped into the seed range (``mod 2**63``): row ``offset`` of a seeded call on a
    backend with per-row seeds, and (through :func:`retry_seed`) a retry attempt's seed."""
    return (seed + offset) % (SEED_MAX + 1)


def _real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise InvalidParameterError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


def _stops(stop: Iterable[str] | str | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = (stop,)
    stops = tuple(stop)
    for s in stops:
        if not isinstance(s, str):
            raise InvalidParameterError(f"a stop sequence must be a string, got {s!r}.")
        check_text(s, "stop sequence")
    return tuple(s for s in stops if s)
