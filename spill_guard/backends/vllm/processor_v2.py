"""The capture processor for vLLM's V2 model runner (the GPU default where Triton runs).

The V2 interface differs from V1: requests arrive one at a time (``add_request(slot,
params)``; slots are recycled and there is no removal call), and ``apply(logits, ctx)``
gets the step layout (batch position -> slot, sequence lengths on the host). V2 applies
logit bias, penalties and bad words *before* custom processors, so captured requests with
any of those are refused (``validate_params``), on top of V1's list.

A step is numbered from the host-side sequence length: ``seq_len - prompt_len`` output
tokens were already there. Rows of an unfinished chunked prefill (``seq_len <= prompt_len``
minus one) are skipped; a recomputed step after preemption rewrites the same step.
Speculative decoding (several rows per request) is refused at engine creation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcessor

from spill_guard.backends.vllm.processor import DEFAULT_CAPACITY, capture_settings
from spill_guard.backends.vllm.reduce import Columns, reduce_step
from spill_guard.backends.vllm.registry import register_store
from spill_guard.backends.vllm.requests import CaptureRequest, check_capturable
from spill_guard.backends.vllm.store import CaptureStore


class SpillGuardV2LogitsProcessor(LogitsProcessor):
    """Records raw-logit statistics of captured requests on the V2 model runner."""

    def __init__(self, vllm_config: Any, req_states: Any):
        settings = capture_settings(vllm_config)
        self.columns = Columns.for_betas(settings.get("betas", (1.0,)))
        self.store = CaptureStore(
            self.columns.width,
            int(settings.get("capacity", DEFAULT_CAPACITY)),
            req_states.device,
            int(settings.get("max_detached", 4096)),
        )
        register_store(self.store)
        self.req_states = req_states
        self.slots: dict[int, CaptureRequest] = {}

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        if CaptureRequest.from_params(sampling_params) is not None:
            check_capturable(sampling_params, runner="v2")

    def add_request(self, req_idx: int, sampling_params: Any) -> bool:
        old = self.slots.pop(req_idx, None)
        if old is not None:  # V2 never says a request left: a reused slot means the old one did
            self.store.detach(old.key)
        spec = CaptureRequest.from_params(sampling_params)
        if spec is None:
            return False
        self.store.attach(spec.key)
        if spec.continues:
            self.store.link(spec.key, spec.continues)
        self.slots[req_idx] = spec
        return True  # so V2 runs apply() for this request; the logits are returned unchanged

    @torch.no_grad()
    def apply(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        if not self.slots:
            return logits
        slots = np.asarray(ctx.idx_mapping_np)
        if logits.shape[0] != slots.shape[0]:
            return logits  # several rows per request: speculative decoding, refused at engine creation
        prompt_len = self.req_states.prompt_len.np
        rows, picked = [], []
        for position, slot in enumerate(slots.tolist()):
            spec = self.slots.get(slot)
            if spec is None:
                continue
            step = int(ctx.seq_lens_upper_bound_np[position]) - int(prompt_len[slot])
            if step < 0:
                continue  # a chunk of the prompt, not a sampling step
            rows.append((spec, step))
            picked.append(position)
        if not rows:
            return logits
        z = (
            logits
            if len(picked) == logits.shape[0]
            else logits.index_select(0, torch.tensor(picked, dtype=torch.long, device=logits.device))
        )
        full = [j for j, (spec, _) in enumerate(rows) if spec.stats == "full"]
        previous = [self.store.previous(rows[j][0].key, rows[j][1]) for j in full]
        values, kept = reduce_step(z, self.columns, full, previous)
        self.store.write(values, [(spec.key, step) for spec, step in rows])
        for j, dist in zip(full, kept):
            self.store.keep_previous(rows[j][0].key, rows[j][1], dist)
        return logits
