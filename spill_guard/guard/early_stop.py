"""Stop generating an answer whose running risk already crosses an abort threshold.

Spilled energy arrives token by token during generation (one step late, see
:class:`~spill_guard.capture.TokenStep`), so the guard can end a clearly risky answer before
it is finished and save the rest of the decode. The running score pools the per-token Δ over
the whole answer so far with the rule's pooling; ``mean`` is noisy on the first tokens, so
nothing is stopped before ``min_tokens``.

Used both as a capture listener (``on_step``) and as a backend stop hook (``__call__``, the
:class:`~spill_guard.backends.base.StopHook` contract), returning one flag per row; only a
backend that declares ``stops_early`` takes it (checked when the guard is built).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from spill_guard.capture.step_stats import validate_betas
from spill_guard.capture.streaming import TokenStep
from spill_guard.errors import InvalidParameterError
from spill_guard.scoring.pooling import POOLINGS


class EarlyStop:
    """Abort threshold on the running spilled-energy score (higher = riskier).

    Args:
        abort_threshold: stop once ``pool(Δ_1..Δ_t) > abort_threshold``. An early-stopped
            answer is always flagged (it is unfinished), so set this at or above the flag
            threshold unless you want "stop at the first doubt".
        pooling: ``mean``, ``max`` or ``sum`` (``min`` never rises, so it cannot abort early).
        min_tokens: number of scored tokens required before stopping.
        beta: the β of Δ: finite and > 0 (checked here), and captured by the model (checked
            when the guard is created, so a wrong β never fails half-way through a generation).
    """

    def __init__(self, abort_threshold: float, *, pooling: str = "mean", min_tokens: int = 3, beta: float = 1.0):
        if (
            isinstance(abort_threshold, bool)
            or not isinstance(abort_threshold, numbers.Real)
            or math.isnan(abort_threshold)
        ):
            raise InvalidParameterError(f"abort_threshold must be a number, got {abort_threshold!r}.")
        if not isinstance(pooling, str) or pooling not in ("mean", "max", "sum"):
            raise InvalidParameterError(f"EarlyStop pooling must be mean, max or sum, got {pooling!r}.")
        if isinstance(min_tokens, bool) or not isinstance(min_tokens, int) or min_tokens < 1:
            raise InvalidParameterError(f"min_tokens must be an integer >= 1, got {min_tokens!r}.")
        if isinstance(beta, bool):
            raise InvalidParameterError(f"EarlyStop beta must be a finite number > 0, got {beta!r}.")
        validate_betas((beta,))  # β > 0 and finite; whether the model captures it is checked by SpillGuard
        self.abort_threshold: float = float(abort_threshold)
        self.pooling: str = pooling
        self.min_tokens: int = min_tokens
        self.beta: float = float(beta)

    def session(self, batch_size: int, stop_token_ids: Sequence[int]) -> EarlyStopSession:
        """Fresh per-generation state (one per ``generate`` call; the config stays reusable)."""
        return EarlyStopSession(self, batch_size, set(stop_token_ids))


class EarlyStopSession:
    """Per-call state of :class:`EarlyStop`: running Δ values and where each row was cut."""

    def __init__(self, config: EarlyStop, batch_size: int, stop_ids: set[int]):
        self.config = config
        self.values: list[list[float]] = [[] for _ in range(batch_size)]
        self.finished = [False] * batch_size  # row already ended on a stop token
        self.stopped_at: list[int | None] = [None] * batch_size  # answer length when aborted
        self._stop_ids = stop_ids

    def on_step(self, step: TokenStep) -> None:
        _, _, delta = step.energies(self.config.beta)
        for row, (token, value) in enumerate(zip(step.token_ids.tolist(), delta.tolist())):
            if self.finished[row] or self.stopped_at[row] is not None:
                continue
            self.values[row].append(value)
            if token in self._stop_ids:
                self.finished[row] = True

    def running_score(self, row: int) -> float | None:
        finite = [v for v in self.values[row] if math.isfinite(v)]
        if len(finite) < self.config.min_tokens:
            return None
        return POOLINGS[self.config.pooling](np.asarray(finite))

    def __call__(self, tokens: Sequence[int | None], length: int) -> list[bool]:
        """After each chosen token (``length`` counts it): end the rows whose running score, over
        the tokens before it (their Δ is known one step late), crosses the abort threshold."""
        done = [False] * len(tokens)
        for row, token in enumerate(tokens):
            if token is None or self.finished[row] or self.stopped_at[row] is not None:
                continue
            score = self.running_score(row)
            if score is not None and score > self.config.abort_threshold:
                self.stopped_at[row] = length
                done[row] = True
        return done

    def limits(self) -> list[int | None]:
        return list(self.stopped_at)

    def cut(self, answer_lengths: Sequence[int]) -> list[bool]:
        """Per row, whether this early stop ended the answer: it stopped the row within the answer's
        length (a row another limit ended first may be "stopped" later, past its end; that is no cut)."""
        return [at is not None and at <= length for at, length in zip(self.stopped_at, answer_lengths)]


class EarlyStopWatch:
    """One ``generate`` call's early-stop wiring: what to add to its listeners and stop hooks, and
    which answers it cut. Without an :class:`EarlyStop` it adds nothing and cuts nothing. The guard's
    generation and the server's both build theirs here (one rule for "early stopped").
    """

    def __init__(self, early_stop: EarlyStop | None, batch_size: int, stop_token_ids: Sequence[int]):
        self.session = None if early_stop is None else early_stop.session(batch_size, stop_token_ids)

    @property
    def listeners(self) -> list[Any]:
        return [] if self.session is None else [self.session.on_step]

    @property
    def hooks(self) -> list[Any]:
        return [] if self.session is None else [self.session]

    def cut(self, answers: Sequence[Any]) -> list[bool]:
        """Per answer (anything with ``answer_ids``), whether the early stop ended it."""
        lengths = [len(a.answer_ids) for a in answers]
        return [False] * len(lengths) if self.session is None else self.session.cut(lengths)
