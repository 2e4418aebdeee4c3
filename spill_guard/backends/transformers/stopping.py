"""Every row-level stop of a transformers generation, as one ``StoppingCriteria``.

``model.generate`` calls a stopping criterion after each chosen token with the whole batch's
ids. :class:`RowStops` turns that into the backend contract: each row's own ``max_new_tokens``,
its text stop sequences (:func:`~spill_guard.models.stops.cut_at_stop` on the decoded row, the
one stop-sequence rule) and the caller's :class:`~spill_guard.backends.base.StopHook` s, which
see plain token ids and the answer length, never a tensor or a transformers type.

``limits[row]`` is the answer length where one of them ended the row (``None``: it ran on to a
stop token or to the batch's end); the capture's ``length_limits`` cuts the row's trace there,
so the tokens ``generate`` pads it with afterwards are not part of the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteria

from spill_guard.backends.base import StopHook, stop_flags
from spill_guard.models.stops import cut_at_stop


class RowStops(StoppingCriteria):
    """Ends row ``i`` at ``budgets[i]`` tokens, on the token completing one of ``stops[i]``, or when a hook says so."""

    def __init__(
        self,
        *,
        budgets: Sequence[int],
        stops: Sequence[Sequence[str]],
        hooks: Sequence[StopHook],
        prompt_length: int,
        tokenizer: Any,
        stop_token_ids: Sequence[int],
    ):
        self.budgets = list(budgets)
        self.stops = [tuple(s) for s in stops]
        self.hooks = tuple(hooks)
        self.prompt_length = prompt_length
        self.tokenizer = tokenizer
        self.stop_ids = {int(i) for i in stop_token_ids}
        n = len(self.budgets)
        self.limits: list[int | None] = [None] * n
        self.ended = [False] * n

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.Tensor:
        generated = input_ids[:, self.prompt_length :]
        length = int(generated.shape[1])
        last = generated[:, -1].tolist()
        tokens: list[int | None] = [None if done else int(t) for done, t in zip(self.ended, last)]
        for i, token in enumerate(tokens):
            if token is None:
                continue
            if token in self.stop_ids:
                self.ended[i] = True  # generate ends it itself; the stop token is the answer's last
            elif length >= self.budgets[i] or (self.stops[i] and self._completes_stop(generated[i], self.stops[i])):
                self._end(i, length)
        for hook in self.hooks:
            for i, stop in enumerate(stop_flags(hook(tokens, length), len(tokens), hook)):
                if stop and tokens[i] is not None and not self.ended[i]:
                    self._end(i, length)
        return torch.tensor(self.ended, dtype=torch.bool, device=input_ids.device)

    def _completes_stop(self, row_ids: torch.Tensor, stops: Sequence[str]) -> bool:
        text = self.tokenizer.decode(row_ids.tolist(), skip_special_tokens=True)
        return cut_at_stop(text, stops)[1] is not None

    def _end(self, row: int, length: int) -> None:
        self.limits[row], self.ended[row] = length, True
