"""A per-call random generator for seeded sampling, safe when several threads generate at once.

``transformers``' ``generate`` (5.x) has no ``generator`` argument: sampling calls
``torch.multinomial`` on the process-wide default generator. Seeding that generator
(``torch.manual_seed``) makes a call repeatable only if no other thread draws from it at the
same time. Instead, :class:`SeededSampling` pushes a torch function mode that hands the random
functions their own ``torch.Generator`` seeded with ``seed`` whenever the caller gave none.
Torch function modes are thread-local, so only the calling thread's draws are redirected;
the sampling code and the probabilities it samples from are those of ``transformers``,
unchanged, and a single-threaded call draws exactly what ``torch.manual_seed(seed)`` would.

A seed is an integer from :data:`SEED_MIN` (0) to :data:`SEED_MAX` (``2**63 - 1``);
:func:`check_seed` refuses anything else with the range, before torch would fail with a bare
``ValueError: Overflow when unpacking long long``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import torch
from torch.overrides import TorchFunctionMode

from spill_guard.errors import InvalidParameterError

#: The seeds accepted. torch takes ``-2**63 .. 2**64 - 1`` (a negative one is remapped); vLLM reads
#: -1 as "no seed". Non-negative up to ``2**63 - 1`` means the same everywhere, and leaves room for
#: the offsets a retry or a request's ``n`` rows add to a seed.
SEED_MIN = 0
SEED_MAX = 2**63 - 1


@overload
def check_seed(seed: None, what: str = ...) -> None: ...


@overload
def check_seed(seed: int, what: str = ...) -> int: ...


@overload
def check_seed(seed: object, what: str = ...) -> int | None: ...


def check_seed(seed: object, what: str = "seed") -> int | None:
    """``seed`` if it is ``None`` or an integer in ``[SEED_MIN, SEED_MAX]``; else :class:`InvalidParameterError`."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidParameterError(f"{what} must be an integer or None, got {seed!r}.")
    if not SEED_MIN <= seed <= SEED_MAX:
        raise InvalidParameterError(
            f"{what}={seed} is out of range: a seed must be an integer from {SEED_MIN} to {SEED_MAX} (2**63 - 1)."
        )
    return seed


#: Random functions that take a ``generator=`` argument (sampling uses multinomial; some
#: decoding strategies use exponential_/uniform_ for Gumbel-style draws).
_RANDOM_FUNCTIONS = frozenset(
    {
        torch.multinomial,
        torch.Tensor.multinomial,
        torch.rand,
        torch.randn,
        torch.randint,
        torch.randperm,
        torch.bernoulli,
        torch.Tensor.bernoulli_,
        torch.normal,
        torch.poisson,
        torch.Tensor.uniform_,
        torch.Tensor.normal_,
        torch.Tensor.exponential_,
        torch.Tensor.random_,
        torch.Tensor.geometric_,
        torch.Tensor.cauchy_,
        torch.Tensor.log_normal_,
    }
)


class _SeededGenerators(TorchFunctionMode):
    """Give every random call of this thread a generator seeded with ``seed`` (one per device)."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed
        self.generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self.generators:
            self.generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self.generators[device]

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _RANDOM_FUNCTIONS and kwargs.get("generator") is None:
            kwargs = {**kwargs, "generator": self._generator(_device_of(args, kwargs))}
        return func(*args, **kwargs)


class _RowSeededGenerators(TorchFunctionMode):
    """Give each row of a sampling step its own generator: ``seeds[i]`` for row ``i`` (``None``: the
    process-wide generator). ``torch.multinomial`` on a ``[rows, vocab]`` tensor draws row by row, each
    from ``probs[i:i+1]`` with row ``i``'s generator: what a one-row call seeded ``seeds[i]`` draws from
    the same probabilities. Any other random call inside the window is refused (it would have no row)."""

    def __init__(self, seeds: tuple[int | None, ...]):
        super().__init__()
        self.seeds = seeds
        self.generators: dict[tuple[int, torch.device], torch.Generator] = {}

    def _generator(self, row: int, device: torch.device) -> torch.Generator | None:
        seed = self.seeds[row]
        if seed is None:
            return None
        if (row, device) not in self.generators:
            self.generators[row, device] = torch.Generator(device=device).manual_seed(seed)
        return self.generators[row, device]

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func not in _RANDOM_FUNCTIONS or kwargs.get("generator") is not None:
            return func(*args, **kwargs)
        if func not in (torch.multinomial, torch.Tensor.multinomial):
            raise InvalidParameterError(
                f"per-row seeds cover sampling by torch.multinomial, but this decoding also called {func!r}; "
                "give every row of the call the same seed, or generate the rows in separate calls."
            )
        probs, rest = args[0], args[1:]
        if probs.dim() != 2 or probs.shape[0] != len(self.seeds):
            raise InvalidParameterError(
                f"per-row seeds: {len(self.seeds)} seeds for a sampling step over probabilities of shape "
                f"{tuple(probs.shape)}; pass one seed per row of the generate call."
            )
        return torch.cat(
            [
                func(probs[i : i + 1], *rest, **{**kwargs, "generator": self._generator(i, probs.device)})
                for i in range(probs.shape[0])
            ]
        )


def _device_of(args: tuple, kwargs: dict) -> torch.device:
    for value in args:
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device(kwargs.get("device") or "cpu")  # factories (rand, randn ...) name their device


class SeededSampling:
    """The per-call generator of one seeded ``generate`` call, active only while it samples.

    A function mode sees every torch call of its thread, and a decoding step makes thousands
    (the forward pass) against a handful for sampling. So the mode is pushed by a logits
    processor placed after all others (it leaves the scores untouched: transformers still
    samples, from its own probabilities) and popped by a stopping criterion (which never
    stops anything): each step's window covers just softmax → multinomial → append.
    Use as a context manager around the ``generate`` call, with :meth:`generate_kwargs`.
    """

    def __init__(self, seed: int):
        self.mode: TorchFunctionMode = _SeededGenerators(check_seed(seed))
        self.pushed = False

    @classmethod
    def per_row(cls, seeds: Sequence[int | None]) -> SeededSampling:
        """A window in which row ``i`` of the batch samples from its own generator seeded ``seeds[i]``
        (``None``: the process-wide one), so each row draws what it would draw generated alone, whatever
        else is in the batch. Where every row has the same seed this is ``SeededSampling(seed)``: the
        rows share the call's one generator (and draw different tokens), as a seeded batch always has."""
        checked = tuple(check_seed(s, f"seeds[{i}]") for i, s in enumerate(seeds))
        if not checked:
            raise InvalidParameterError("per-row seeds need at least one row.")
        if len(set(checked)) == 1 and checked[0] is not None:
            return cls(checked[0])
        window = cls.__new__(cls)
        window.mode = _RowSeededGenerators(checked)
        window.pushed = False
        return window

    def generate_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` for ``generate`` with the window's processor and criterion appended."""
        from transformers import LogitsProcessor, StoppingCriteria

        owner = self

        class OpenWindow(LogitsProcessor):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                owner._push()
                return scores

        class CloseWindow(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
                owner._pop()
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        out = dict(kwargs)
        out["logits_processor"] = [*(kwargs.get("logits_processor") or ()), OpenWindow()]
        out["stopping_criteria"] = [*(kwargs.get("stopping_criteria") or ()), CloseWindow()]
        return out

    def _push(self) -> None:
        if not self.pushed:
            self.mode.__enter__()
            self.pushed = True

    def _pop(self) -> None:
        if self.pushed:
            self.mode.__exit__(None, None, None)
            self.pushed = False

    def __enter__(self) -> SeededSampling:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pop()  # an exception between processor and criterion must not leave the mode pushed
