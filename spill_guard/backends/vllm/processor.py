"""The observe-only vLLM (V1 model runner) logits processor that captures raw-logit statistics.

vLLM's V1 sampler applies, in order: the allowed-token mask and bad words, the built-in
min_tokens and logit_bias processors, custom processors that are *not* argmax-invariant,
then penalties, temperature and top-k/p. This processor declares itself not argmax-invariant
so it also runs for greedy requests, refuses (``validate_params``) the settings that would
touch the logits before it, reads each captured row and returns the logits unchanged.

Per captured request and step it stores the log-partitions at every captured β, a
non-finite flag and, for ``stats="full"``, entropy and the JSD to the previous step, in the
worker's :class:`~spill_guard.backends.vllm.store.CaptureStore` (on the device), plus the
row maximum. The chosen logit ``z_t[x_t]`` is not read here (the token is sampled after this
runs): the engine runs with ``logprobs_mode="raw_logprobs"``, so the sampled token's raw
log-probability comes back with the output and ``z_t[x_t] = logprob + logsumexp(z_t)``; a
greedy request without penalties (``chosen="max"``, no logprobs) samples the raw argmax, so
``z_t[x_t]`` is the stored maximum.

Engine-wide settings come from ``additional_config={"spill_guard": {"betas": [...],
"capacity": N, "max_detached": N}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from spill_guard.backends.vllm.reduce import Columns, reduce_step
from spill_guard.backends.vllm.registry import register_store
from spill_guard.backends.vllm.requests import CaptureRequest, check_capturable
from spill_guard.backends.vllm.store import CaptureStore

#: Default ring slots when the config does not say: enough for every running sequence to
#: generate a long answer before anyone fetches.
DEFAULT_CAPACITY = 1 << 20


@dataclass
class _Row:
    key: str
    output_ids: list[int]  # vLLM's live list of the request's output tokens (placeholders under async)
    full: bool


def capture_settings(vllm_config: Any) -> dict[str, Any]:
    return dict((getattr(vllm_config, "additional_config", None) or {}).get("spill_guard", {}))


class SpillGuardLogitsProcessor(LogitsProcessor):
    """Records raw-logit statistics of requests that carry ``extra_args["spill_guard"]``."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool):
        settings = capture_settings(vllm_config)
        self.columns = Columns.for_betas(settings.get("betas", (1.0,)))
        self.store = CaptureStore(
            self.columns.width,
            int(settings.get("capacity", DEFAULT_CAPACITY)),
            device,
            int(settings.get("max_detached", 4096)),
        )
        register_store(self.store)
        self.rows: dict[int, _Row] = {}  # persistent-batch index -> captured request
        # (batch rows, captured indices, their index tensor or None, their rows): rebuilt only when
        # update_state changed the batch, not on every decoding step.
        self._layout: tuple[int, list[int], torch.Tensor | None, list[_Row]] | None = None
        self._scratch: torch.Tensor | None = None  # see _scratch_for

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        if CaptureRequest.from_params(sampling_params) is not None:
            check_capturable(sampling_params, runner="v1")  # a ValueError: vLLM turns it into a 400

    def is_argmax_invariant(self) -> bool:
        return False  # so vLLM runs it for greedy requests too; it never changes the logits

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        self._layout = None
        # vLLM's documented order: removed, added, moved.
        for index in batch_update.removed:
            self._drop(index)
        for index, params, _prompt, output_ids in batch_update.added:
            self._drop(index)
            spec = CaptureRequest.from_params(params)
            if spec is None:
                continue
            self.store.attach(spec.key)
            if spec.continues:
                self.store.link(spec.key, spec.continues)
            self.rows[index] = _Row(spec.key, output_ids, spec.stats == "full")
        for first, second, direction in batch_update.moved:
            a, b = self.rows.pop(first, None), self.rows.pop(second, None)
            if a is not None:
                self.rows[second] = a
            if b is not None and direction == MoveDirectionality.SWAP:
                self.rows[first] = b
            elif b is not None:  # a one-way move overwrote a request vLLM had already removed
                self.store.detach(b.key)

    def _drop(self, index: int) -> None:
        row = self.rows.pop(index, None)
        if row is not None:
            self.store.detach(row.key)

    @torch.no_grad()
    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        _, indices, index, rows = self._batch_layout(logits)
        if not indices:
            return logits
        z = logits if index is None else logits.index_select(0, index)  # all rows captured: no copy
        # A step is numbered by the output tokens the request already has: partial prefill chunks
        # and recomputation after preemption rewrite the same step, the final write is the real one.
        steps = [len(r.output_ids) for r in rows]
        full = [j for j, r in enumerate(rows) if r.full]
        previous = [self.store.previous(rows[j].key, steps[j]) for j in full]
        values, kept = reduce_step(z, self.columns, full, previous, scratch=self._scratch_for(z))
        self.store.write(values, [(r.key, s) for r, s in zip(rows, steps)])
        for j, dist in zip(full, kept):
            self.store.keep_previous(rows[j].key, steps[j], dist)
        return logits

    def _scratch_for(self, z: torch.Tensor) -> torch.Tensor | None:
        """A reused float32 ``[R, V]`` buffer for the log-softmax pass, on CPU only.

        A fresh multi-megabyte buffer per step costs page faults on CPU; GPU allocations come
        from torch's caching allocator, where a kept buffer would only hold memory back.
        """
        if z.device.type != "cpu" or z.dtype != torch.float32:
            return None
        rows, vocab = z.shape
        if self._scratch is None or self._scratch.shape[0] < rows or self._scratch.shape[1] != vocab:
            self._scratch = torch.empty(max(rows, 1), vocab, dtype=torch.float32)
        return self._scratch[:rows]

    def _batch_layout(self, logits: torch.Tensor) -> tuple[int, list[int], torch.Tensor | None, list[_Row]]:
        layout = self._layout
        if layout is None or layout[0] != logits.shape[0]:
            indices = sorted(i for i in self.rows if i < logits.shape[0])
            index = (
                None
                if len(indices) == logits.shape[0]
                else torch.tensor(indices, dtype=torch.long, device=logits.device)
            )
            layout = self._layout = (logits.shape[0], indices, index, [self.rows[i] for i in indices])
        return layout
