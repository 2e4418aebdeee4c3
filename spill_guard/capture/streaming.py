"""Streaming capture: reduce each decoding step's raw logits while ``generate`` runs.

A forward hook on the model sees its raw output (before repetition penalties, temperature,
top-k/p or any ``LogitsProcessor``), which is what SPEC §1 defines the energies on. At step
``t + 1`` the hook's input is ``x_t``, so it can pair ``z_t`` (kept from the previous call)
with the token chosen from it and with ``z_{t+1}``. Only two ``[B, V]`` rows are held at any
time; the history is ``O(B × T)`` scalars.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from spill_guard.capture.cache_rows import has_room, select_cache_rows
from spill_guard.capture.final_step import final_step_needed
from spill_guard.capture.step_stats import (
    StepDistribution,
    gather_token_logit,
    js_from_distributions,
    log_partition,
    summarize,
    validate_betas,
)
from spill_guard.capture.thread_router import ThreadRouter
from spill_guard.capture.trace import TokenTrace, traces_from_steps
from spill_guard.errors import CaptureError


@dataclass(frozen=True)
class TokenStep:
    """What is known about generated token ``x_t`` once ``z_{t+1}`` exists (one step later).

    Sent to capture listeners, e.g. to stream per-token energies or stop early.
    Shapes: ``token_ids``/``chosen_logit`` are ``[B]``; log-partitions ``[len(betas), B]``.
    """

    index: int  # t, 0-based position of the token in the generated answer
    token_ids: torch.Tensor  # x_t for each row
    chosen_logit: torch.Tensor  # raw z_t[x_t] (no β applied)
    log_partition: torch.Tensor  # logsumexp(β z_t)
    next_log_partition: torch.Tensor  # logsumexp(β z_{t+1})
    betas: tuple[float, ...]

    def energies(self, beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(E_t, F_t, Δ_t)`` for each row at ``beta`` (which must have been captured)."""
        k = self.betas.index(float(beta))
        scaled = beta * self.chosen_logit
        return -scaled, -self.log_partition[k], self.next_log_partition[k] - scaled


#: "full": every statistic; "energy": log-partitions and chosen logits only (no softmax pass).
CAPTURE_STATS = ("full", "energy")


class StreamingCapture:
    """Context manager that hooks ``model`` and records per-step logit statistics.

    Use it around exactly one ``generate`` call (plus, if needed, :meth:`ensure_final_step`).
    Shapes: every recorded step holds ``[B]`` values; ``[len(betas), B]`` for log-partitions.
    ``listeners`` are called with a :class:`TokenStep` for each token as soon as its
    spilled energy is known; they must not modify the tensors they receive.
    ``stats="energy"`` skips the per-step softmax, entropy and JSD (the costliest part of the
    hook): energies, likelihoods and their baselines still work; entropy-based scorers refuse
    such traces with a clear error.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        betas: tuple[float, ...] = (1.0,),
        listeners: Sequence[Callable[[TokenStep], None]] = (),
        stats: str = "full",
        skip_after: Collection[int] = (),
    ):
        if stats not in CAPTURE_STATS:
            raise CaptureError(f"stats must be one of {list(CAPTURE_STATS)}, got {stats!r}.")
        self.model = model
        self.betas = validate_betas(betas)
        self.listeners = tuple(listeners)
        self.stats = stats
        # The stop tokens whose z_(T+1) is not kept (final_step="auto"): a row ending on one has no last-token
        # Δ in a batch either, where a longer row's next decode step computed it: a row's values never depend
        # on what else is in its batch.
        self.skip_after = torch.tensor(sorted({int(t) for t in skip_after}), dtype=torch.long)
        self._active = False
        self._reset()

    def _reset(self) -> None:
        self.steps = 0
        self._probs: list[torch.Tensor] = []  # two [B, V] buffers, alternating (see _buffers)
        self._scratch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._lse_scratch: torch.Tensor | None = None  # stats="energy" (see _energy_scratch)
        self._prev: StepDistribution | None = None
        self._prev_logits: torch.Tensor | None = None
        self._prev_prev_logits: torch.Tensor | None = None
        self._chosen: list[torch.Tensor] = []
        self._previous: list[torch.Tensor] = []
        self._jsd: list[torch.Tensor] = []
        self._log_partition: list[torch.Tensor] = []
        self._entropy: list[torch.Tensor] = []
        self._nonfinite: list[torch.Tensor] = []
        self._final_skipped = False  # z_(T+1) was not computed (see skip_final_step)
        # While ensure_final_step runs on some rows only: (their batch indices, every row's last token).
        self._subset: tuple[torch.Tensor, torch.Tensor] | None = None
        self.vocab_size = 0

    def __enter__(self) -> StreamingCapture:
        if self._active:
            raise CaptureError("this StreamingCapture is already active; create one per generate call.")
        self._reset()
        ThreadRouter.attach(self.model, self)  # only this thread's forwards reach self._hook
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            ThreadRouter.detach(self.model, self)
            self._active = False
        self._prev = self._prev_logits = self._prev_prev_logits = None  # release the [B, V] rows
        self._probs, self._scratch, self._lse_scratch = [], None, None

    @torch.no_grad()
    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        logits = output.logits if hasattr(output, "logits") else output[0]
        # Only the last position; its reduction copies it, so a prefill's [B, P, V] output is not kept alive.
        z = logits[:, -1, :].detach()
        if self._subset is not None:  # the z_(T+1) step on some rows only
            self._record_subset(z, *self._subset)
            return
        if self.stats == "full":
            probs_out, scratch = self._buffers(z)
            current = summarize(z, self.betas, probs_out=probs_out, scratch=scratch[0])
            log_z, nonfinite = current.log_partition, current.nonfinite
        else:
            current = None
            log_z = log_partition(z, self.betas, scratch=self._energy_scratch(z))
            nonfinite = ~torch.isfinite(log_z[self.betas.index(1.0)])  # as summarize() flags it
        if self.steps > 0:
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            if input_ids is None:
                raise CaptureError(
                    "the decoding step received no input_ids (inputs_embeds only?); streaming capture "
                    "needs token ids to know which token was chosen. Generate from input_ids."
                )
            tokens = input_ids[:, -1]
            chosen = self._record_chosen(tokens)
            if current is not None:
                assert self._prev is not None  # recorded by the step before (stats="full")
                self._jsd.append(js_from_distributions(self._prev, current, scratch=self._scratch))
            ended = self._ended_textless(tokens)
            if ended is not None:  # these rows' z_(t+1) is dropped, as it is where generation stops there
                log_z, nonfinite = log_z.masked_fill(ended, float("nan")), nonfinite & ~ended
                if current is not None:
                    self._jsd[-1] = self._jsd[-1].masked_fill(ended, float("nan"))
            if self.listeners:
                step = TokenStep(self.steps - 1, tokens, chosen, self._log_partition[-1], log_z, self.betas)
                for listener in self.listeners:
                    listener(step)
        self._log_partition.append(log_z)
        if current is not None:
            self._entropy.append(current.entropy)
        self._nonfinite.append(nonfinite)
        self.vocab_size = int(z.shape[-1])
        # Two raw rows (for z_t[x_t] and the reference variant's z_(t-1)[x_t]) and one distribution.
        # A decode step's [B, 1, V] output is z itself: keeping the view copies nothing. A prefill's
        # last row is copied, or the whole [B, P, V] output would stay alive.
        kept = z.clone() if logits.shape[1] > 1 else z
        self._prev_prev_logits, self._prev_logits = self._prev_logits, kept
        self._prev = current
        self.steps += 1

    def _ended_textless(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """``[B]`` mask of the rows whose token ``tokens`` is a stop token without text (``skip_after``),
        or None without such tokens (``final_step="always"``). Computed on the tokens' device, never read
        back: a decode step does not wait for it."""
        if not len(self.skip_after):
            return None
        if self.skip_after.device != tokens.device:
            self.skip_after = self.skip_after.to(tokens.device)  # once per call
        return torch.isin(tokens, self.skip_after)

    def _record_chosen(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append the chosen tokens' logits ``[B]`` from ``z_t`` and from ``z_{t-1}`` (NaN before the first step)."""
        assert self._prev_logits is not None  # a step was recorded before this one
        chosen = gather_token_logit(self._prev_logits, tokens)
        self._chosen.append(chosen)
        if self._prev_prev_logits is None:
            self._previous.append(torch.full_like(chosen, float("nan")))
        else:
            self._previous.append(gather_token_logit(self._prev_prev_logits, tokens))
        return chosen

    def _record_subset(self, z: torch.Tensor, rows: torch.Tensor, last: torch.Tensor) -> None:
        """Record the ``z_{T+1}`` step computed for batch ``rows`` only (``z`` is ``[len(rows), V]``).

        ``last`` is every row's last generated token ``[B]``: the chosen logits come from ``z_T``,
        kept for the whole batch. The other rows' next-step values are NaN (they ended earlier and
        got their ``z_{T+1}`` from the batch's next decode step; their traces stop before this column).
        """
        chosen = self._record_chosen(last)
        batch = int(last.shape[0])
        if self.stats == "full":
            current = summarize(z, self.betas)
            log_z, nonfinite = current.log_partition, current.nonfinite
            prev = self._prev
            assert prev is not None  # the last decode step's distribution (stats="full")
            earlier = StepDistribution(
                prev.log_partition[:, rows], prev.probs[rows], prev.entropy[rows], prev.nonfinite[rows]
            )
            self._jsd.append(_widen(js_from_distributions(earlier, current), rows, batch, float("nan")))
            self._entropy.append(_widen(current.entropy, rows, batch, float("nan")))
        else:
            log_z = log_partition(z, self.betas)
            nonfinite = ~torch.isfinite(log_z[self.betas.index(1.0)])
        log_z = _widen(log_z, rows, batch, float("nan"))
        nonfinite = _widen(nonfinite, rows, batch, False)  # not computed is not non-finite
        ended = self._ended_textless(last)
        if ended is not None:  # in the step for a row cut by max_new_tokens, a row that ended textless keeps none
            log_z, nonfinite = log_z.masked_fill(ended, float("nan")), nonfinite & ~ended
            if self.stats == "full":
                self._jsd[-1] = self._jsd[-1].masked_fill(ended, float("nan"))
        if self.listeners:
            step = TokenStep(self.steps - 1, last, chosen, self._log_partition[-1], log_z, self.betas)
            for listener in self.listeners:
                listener(step)
        self._log_partition.append(log_z)
        self._nonfinite.append(nonfinite)
        self._prev_prev_logits = self._prev_logits = None  # no step follows; the rows no longer line up
        self._prev = None
        self.steps += 1

    def _energy_scratch(self, z: torch.Tensor) -> torch.Tensor:
        """One float32 ``[B, V]`` buffer for the log-partition pass, reused across steps."""
        buffer = self._lse_scratch
        if buffer is None or buffer.shape != z.shape or buffer.device != z.device:
            dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
            buffer = self._lse_scratch = torch.empty(z.shape, dtype=dtype, device=z.device)
        return buffer

    def _buffers(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """This step's probability buffer and two scratch buffers, reused across steps.

        Probabilities alternate between two buffers: step t+1 writes one while step t's
        distribution, still needed for the JSD, sits in the other.
        """
        shape = (z.shape[0], z.shape[-1])
        if not self._probs or self._probs[0].shape != shape or self._probs[0].device != z.device:
            dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
            self._probs = [torch.empty(shape, dtype=dtype, device=z.device) for _ in range(2)]
            self._scratch = (torch.empty_like(self._probs[0]), torch.empty_like(self._probs[0]))
        assert self._scratch is not None  # allocated with the probability buffers
        return self._probs[self.steps % 2], self._scratch

    def traces(self, token_ids: torch.Tensor, lengths: list[int]) -> list[TokenTrace]:
        """Per-row traces for generated ``token_ids`` ``[B, T]``, row ``b`` cut at ``lengths[b]``.

        Needs ``T + 1`` recorded steps (``z_1..z_{T+1}``); see :meth:`finish`. After
        :meth:`skip_final_step`, rows of length ``T`` get ``final_step=False`` traces, and so does every row
        that ended on a ``skip_after`` token, wherever it ended (its ``z_(T+1)`` was dropped).
        """
        n_tokens = int(token_ids.shape[1])
        if n_tokens == 0:
            raise CaptureError("no tokens were generated; use max_new_tokens >= 1.")
        if self.steps < n_tokens + 1:
            raise CaptureError(
                f"captured {self.steps} forward steps but {n_tokens} generated tokens need "
                f"{n_tokens + 1} (the last token's z_(T+1)); call finish() or ensure_final_step() after generate."
            )
        skipped = set(self.skip_after.tolist())  # once per call
        last = [int(token_ids[b, n - 1]) if n else None for b, n in enumerate(lengths)]
        final = [
            not ((self._final_skipped and n == n_tokens) or (n and last[b] in skipped)) for b, n in enumerate(lengths)
        ]
        return traces_from_steps(
            token_ids,
            lengths,
            self.betas,
            torch.stack(self._chosen[:n_tokens], dim=-1),
            torch.stack(self._previous[:n_tokens], dim=-1),
            torch.stack(self._log_partition[: n_tokens + 1], dim=-1),
            self._stacked_or_nan(self._entropy, n_tokens),
            self._stacked_or_nan(self._jsd, n_tokens),
            torch.stack(self._nonfinite[: n_tokens + 1], dim=-1),
            self.vocab_size,
            distribution_stats=self.stats == "full",
            final_step=final,
        )

    def _stacked_or_nan(self, steps: list[torch.Tensor], n_tokens: int) -> torch.Tensor:
        if self.stats == "full":
            return torch.stack(steps[:n_tokens], dim=-1)
        return torch.full((self._chosen[0].shape[0], n_tokens), float("nan"))  # not captured

    def finish(
        self,
        sequences: torch.Tensor,
        prompt_attention_mask: torch.Tensor,
        cache: Any = None,
        *,
        lengths: Sequence[int],
        stopped: Sequence[bool],
        skip_after: Collection[int] = (),
    ) -> None:
        """Complete the last generated column: the ``z_{T+1}`` step if a row needs it, else skip it.

        ``lengths``/``stopped`` are the rows' final answer lengths and stop flags; ``skip_after``
        the stop tokens after which the step is not worth running (see
        :mod:`spill_guard.capture.final_step`; empty: run it whenever a row ends in the last column).
        The step runs on the rows that reached the last column only: the others got their
        ``z_{T+1}`` from the batch's next decode step.
        """
        generated = sequences[:, int(prompt_attention_mask.shape[1]) :]
        n_tokens = int(generated.shape[1])
        if n_tokens and not final_step_needed(generated[:, -1].tolist(), lengths, stopped, n_tokens, skip_after):
            self.skip_final_step(generated)
        else:
            rows = [b for b, n in enumerate(lengths) if n == n_tokens]
            self.ensure_final_step(sequences, prompt_attention_mask, cache, rows=rows or None)

    @torch.no_grad()
    def skip_final_step(self, generated: torch.Tensor) -> None:
        """Record the last token of ``generated`` ``[B, T]`` without running the ``z_{T+1}`` step.

        Its chosen logit comes from ``z_T``, kept from the last step; the values that need
        ``z_{T+1}`` (log-partition, JSD, the listener's next log-partition) are NaN.
        """
        if not self._active:
            raise CaptureError("skip_final_step() must run inside the `with StreamingCapture(...)` block.")
        n_tokens = int(generated.shape[1])
        if self.steps >= n_tokens + 1 or self._prev_logits is None:
            return  # z_(T+1) exists already (a deferred stop check ran one step past the end)
        last = generated[:, -1]
        chosen = self._record_chosen(last)
        missing = torch.full_like(self._log_partition[-1], float("nan"))
        if self.stats == "full":
            self._jsd.append(torch.full_like(self._jsd[-1] if self._jsd else chosen, float("nan")))
        if self.listeners:
            step = TokenStep(self.steps - 1, last, chosen, self._log_partition[-1], missing, self.betas)
            for listener in self.listeners:
                listener(step)
        self._log_partition.append(missing)
        self._nonfinite.append(torch.zeros_like(self._nonfinite[-1]))  # not computed is not non-finite
        self._final_skipped = True
        self.steps += 1

    @torch.no_grad()
    def ensure_final_step(
        self,
        sequences: torch.Tensor,
        prompt_attention_mask: torch.Tensor,
        cache: Any = None,
        *,
        rows: Sequence[int] | None = None,
    ) -> None:
        """Run the one extra forward step that yields ``z_{T+1}``, if generation did not.

        ``generate`` stops right after choosing ``x_T``, so the logits after reading it do not
        exist yet. With the returned KV cache this costs a single-token step. Must be called
        while the capture is active.

        ``rows`` (default: all): the batch rows that need the step, those whose answer reached
        the last column. The step then runs on those rows alone, on a view of their rows of the
        cache (:mod:`spill_guard.capture.cache_rows`); the other rows' ``z_{T+1}`` values are
        NaN here (they came from the batch's next decode step). The caller's ``cache`` is not
        modified, except by a cache type that cannot be viewed, which gets the whole-batch step.
        """
        if not self._active:
            raise CaptureError("ensure_final_step() must run inside the `with StreamingCapture(...)` block.")
        batch = int(sequences.shape[0])
        if rows is not None and (not rows or min(rows) < 0 or max(rows) >= batch):
            raise CaptureError(f"rows must be a non-empty list of batch rows in [0, {batch}), got {list(rows)!r}.")
        prompt_len = int(prompt_attention_mask.shape[1])
        n_tokens = int(sequences.shape[1]) - prompt_len
        if self.steps >= n_tokens + 1:
            return  # e.g. a deferred stop check already ran one step past the end
        if cache is not None and not has_room(cache, int(sequences.shape[1])):
            cache = None  # a full static cache: the step as one full pass (below), on the selected rows
        index = None
        if rows is not None and self._prev_logits is not None and len(set(rows)) < batch:
            index = torch.tensor(sorted(set(rows)), dtype=torch.long, device=sequences.device)
        view = select_cache_rows(cache, index) if cache is not None else None
        if view is None and cache is not None:
            index = None  # a cache that cannot be viewed: the whole batch, on the cache as it is
        if index is not None:
            self._subset = (index, sequences[:, -1])
            sequences, prompt_attention_mask = sequences[index], prompt_attention_mask[index]
        new = torch.ones(
            sequences.shape[0], n_tokens, dtype=prompt_attention_mask.dtype, device=prompt_attention_mask.device
        )
        mask = torch.cat([prompt_attention_mask, new], dim=-1)
        positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
        try:
            if cache is not None:
                self.model(
                    input_ids=sequences[:, -1:],
                    attention_mask=mask,
                    position_ids=positions[:, -1:],
                    cache=view if view is not None else cache,  # transformers 5.x name (`past_key_values` deprecated)
                    cache_position=torch.tensor([sequences.shape[1] - 1], device=sequences.device),
                    use_cache=True,
                )
            else:  # no cache returned: a full pass; the hook keeps only the last position
                self.model(input_ids=sequences, attention_mask=mask, position_ids=positions, use_cache=False)
        finally:
            self._subset = None


@dataclass
class CapturedGeneration:
    """Output of :func:`generate_with_capture` for a batch of prompts."""

    sequences: torch.Tensor  # [B, P_max + T_max], left-padded prompts then generated tokens
    prompt_length: int  # P_max
    lengths: list[int]  # answer tokens per row, through the first stop token inclusive
    stopped_on_eos: list[bool]
    traces: list[TokenTrace]


@torch.no_grad()
def generate_with_capture(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    stop_token_ids: list[int],
    betas: tuple[float, ...] = (1.0,),
    listeners: Sequence[Callable[[TokenStep], None]] = (),
    length_limits: Callable[[], Sequence[int | None]] | None = None,
    stats: str = "full",
    skip_final_step_after: Collection[int] = (),
    **generate_kwargs: Any,
) -> CapturedGeneration:
    """``model.generate`` with streaming capture; returns sequences and per-row traces.

    ``input_ids``/``attention_mask`` are ``[B, P]`` and must be left-padded. Any
    ``generate_kwargs`` (``max_new_tokens``, ``do_sample``, ``temperature`` ...) pass through.
    ``listeners`` receive each token's :class:`TokenStep`. ``length_limits``, called after
    generation, may cut rows that a stopping criterion ended early (``None`` = no cut): such
    rows are padded by ``generate`` afterwards, and the padding is not part of the answer.
    ``stats`` is ``"full"`` or ``"energy"`` (see :class:`StreamingCapture`).
    ``skip_final_step_after``: stop tokens after which the ``z_{T+1}`` step is skipped
    (:mod:`spill_guard.capture.final_step`); empty: never skipped.
    """
    if attention_mask.shape != input_ids.shape:
        raise CaptureError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids {tuple(input_ids.shape)}")
    if bool((attention_mask[:, -1] == 0).any()):
        raise CaptureError("prompts must be left-padded (the last column of attention_mask has zeros).")
    extra_stop = generate_kwargs.pop("eos_token_id", None)  # merged, not passed twice
    if extra_stop is not None:
        stop_token_ids = list(
            dict.fromkeys([*stop_token_ids, *([extra_stop] if isinstance(extra_stop, int) else extra_stop)])
        )
    generate_kwargs.pop("return_dict_in_generate", None)  # always on: the KV cache is needed
    prompt_len = int(input_ids.shape[1])
    with StreamingCapture(model, betas, listeners, stats, skip_after=skip_final_step_after) as capture:
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            eos_token_id=stop_token_ids,
            return_dict_in_generate=True,
            **generate_kwargs,
        )
        generated = out.sequences[:, prompt_len:]
        lengths, stopped = stop_lengths(generated, stop_token_ids)
        if length_limits is not None:
            for row, limit in enumerate(length_limits()):
                if limit is not None and limit < lengths[row]:
                    lengths[row], stopped[row] = limit, False
        capture.finish(
            out.sequences,
            attention_mask,
            getattr(out, "cache", None),
            lengths=lengths,
            stopped=stopped,
            skip_after=skip_final_step_after,
        )
    traces = capture.traces(generated, lengths)
    return CapturedGeneration(out.sequences, prompt_len, lengths, stopped, traces)


def _widen(values: torch.Tensor, rows: torch.Tensor, batch: int, fill: float | bool) -> torch.Tensor:
    """``values`` (last axis: ``rows``) placed into a last axis of ``batch`` entries, the rest ``fill``."""
    out = values.new_full((*values.shape[:-1], batch), fill)
    out[..., rows.to(values.device)] = values
    return out


def stop_lengths(generated: torch.Tensor, stop_token_ids: list[int]) -> tuple[list[int], list[bool]]:
    """Length of each row up to and including its first stop token (or the full row)."""
    is_stop = torch.isin(generated, torch.tensor(stop_token_ids, device=generated.device))
    lengths, stopped = [], []
    for row in is_stop:
        hits = torch.nonzero(row)
        if len(hits):
            lengths.append(int(hits[0, 0]) + 1)
            stopped.append(True)
        else:
            lengths.append(int(row.shape[0]))
            stopped.append(False)
    return lengths, stopped
