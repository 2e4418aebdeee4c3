"""The keyword form of ``generate_from_ids`` from before the backend contract (transition only).

Callers that still pass ``do_sample=...``, ``stopping_criteria=[...]`` or vLLM sampling fields
as keywords get them translated here into :class:`~spill_guard.models.params.GenerationParams`
and :class:`~spill_guard.backends.base.StopHook` s. Delete this module once every call site
uses :meth:`SpillModel.generate_params <spill_guard.SpillModel.generate_params>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from spill_guard.backends.base import STOPS_EARLY, StopHook, require
from spill_guard.capture.padding import left_pad
from spill_guard.errors import InvalidParameterError
from spill_guard.models.params import GenerationParams

#: Keywords of transformers' generate() that the old form passed through and that mean nothing now.
_DROPPED = ("pad_token_id",)


def legacy_request(
    backend: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    seed: int | None,
    stop: Iterable[str],
    stopping_criteria: Iterable[Callable[..., Any]] | None,
    engine_options: Mapping[str, Any],
) -> tuple[GenerationParams, list[StopHook]]:
    """``(params, stop_hooks)`` of an old-form call on ``backend``.

    ``stopping_criteria`` (transformers-style ``criterion(input_ids, scores)`` callables) become one
    stop hook fed the same left-padded ids; they need the ``stops_early`` capability.
    """
    if do_sample and temperature == 0:
        raise InvalidParameterError("do_sample=True needs a temperature > 0 (temperature=0 decodes greedily).")
    params = GenerationParams(
        max_new_tokens=max_new_tokens,
        temperature=float(temperature) if do_sample else 0.0,
        top_p=float(top_p) if do_sample else 1.0,
        seed=seed,
        stop=tuple(stop),
    )
    options = {k: v for k, v in engine_options.items() if k not in _DROPPED}
    if options:
        extend = getattr(backend, "with_engine_options", None)
        if extend is None:
            raise InvalidParameterError(
                f"unknown generation option(s) {sorted(options)} for the {backend.name!r} backend; it takes "
                "max_new_tokens, do_sample, temperature, top_p, seed and stop."
            )
        params = extend(params, options)
    criteria = list(stopping_criteria or ())
    hooks: list[StopHook] = []
    if criteria:
        require(backend, STOPS_EARLY, "stopping_criteria (the guard's early_stop, a stream's cancel)")
        hooks.append(CriteriaHook(criteria, prompts, backend.loaded.pad_token_id))
    return params, hooks


class CriteriaHook:
    """transformers-style stopping criteria as one :class:`StopHook`.

    Rebuilds the ids ``generate`` hands its criteria (left-padded prompts, then each step's
    tokens, the pad token on rows that ended) and ORs the criteria's answers. ``scores`` is None.
    """

    def __init__(self, criteria: Sequence[Callable[..., Any]], prompts: Sequence[Sequence[int]], pad_token_id: int):
        self.criteria = list(criteria)
        self.pad = int(pad_token_id)
        self.ids, _, _ = left_pad([list(p) for p in prompts], self.pad, torch.device("cpu"))

    def __call__(self, tokens: Sequence[int | None], length: int) -> list[bool]:
        column = torch.tensor([[self.pad if t is None else int(t)] for t in tokens], dtype=self.ids.dtype)
        self.ids = torch.cat([self.ids, column], dim=1)
        done = torch.zeros(len(tokens), dtype=torch.bool)
        for criterion in self.criteria:
            done |= torch.as_tensor(criterion(self.ids, None)).reshape(-1).to(torch.bool).expand(len(tokens))
        return done.tolist()
