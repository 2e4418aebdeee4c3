"""A per-call random generator for seeded sampling, safe when several threads generate at once.

``transformers``' ``generate`` (5.x) has no ``generator`` argument: sampling calls
``torch.multinomial`` on the process-wide default generator. Seeding that generator
(``torch.manual_seed``) makes a call repeatable only if no other thread draws from it at the
same time. Instead, :func:`seeded_rng` pushes a torch function mode that hands the random
functions their own ``torch.Generator`` seeded with ``seed`` whenever the caller gave none.
Torch function modes are thread-local, so only the calling thread's draws are redirected;
the sampling code and the probabilities it samples from are those of ``transformers``,
unchanged, and a single-threaded call draws exactly what ``torch.manual_seed(seed)`` would.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode

#: Random functions that take a ``generator=`` argument (sampling uses multinomial; some
#: decoding strategies use exponential_/uniform_ for Gumbel-style draws).
_RANDOM_FUNCTIONS = frozenset({
    torch.multinomial, torch.Tensor.multinomial,
    torch.rand, torch.randn, torch.randint, torch.randperm,
    torch.bernoulli, torch.Tensor.bernoulli_, torch.normal, torch.poisson,
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.exponential_,
    torch.Tensor.random_, torch.Tensor.geometric_, torch.Tensor.cauchy_, torch.Tensor.log_normal_,
})


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


def _device_of(args: tuple, kwargs: dict) -> torch.device:
    for value in args:
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device(kwargs.get("device") or "cpu")  # factories (rand, randn ...) name their device


@contextmanager
def seeded_rng(seed: int | None) -> Iterator[None]:
    """Within the block, this thread's random draws come from generators seeded with ``seed``.

    ``None`` changes nothing (the default generator, as without a seed).
    """
    if seed is None:
        yield
        return
    with _SeededGenerators(int(seed)):
        yield
