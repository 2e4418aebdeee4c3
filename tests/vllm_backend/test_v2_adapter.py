"""The V2-runner processor with hand-built inputs (V2 needs Triton, which this CPU build lacks).

Checks what the GPU default runner would record: per-slot keys, steps from host sequence
lengths, prompt chunks skipped, a reused slot releasing its old request, values equal to
the core's formulas, and penalties refused for captured requests. The V1 processor's
bookkeeping (swaps, moves, removals between steps) is checked the same way at the end.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vllm_support import requires_vllm

from spill_guard.capture.step_stats import log_partition, summarize, js_from_distributions

pytestmark = requires_vllm


def make_processor(prompt_lens):
    from spill_guard.backends.vllm.processor_v2 import SpillGuardV2LogitsProcessor

    config = SimpleNamespace(additional_config={"spill_guard": {"betas": [1.0, 0.5], "capacity": 64}})
    states = SimpleNamespace(device=torch.device("cpu"), prompt_len=SimpleNamespace(np=np.array(prompt_lens)))
    return SpillGuardV2LogitsProcessor(config, states)


def params(key, stats="energy", **kw):
    from vllm import SamplingParams

    from spill_guard.backends.vllm.requests import CaptureRequest

    return SamplingParams(logprobs=0, extra_args=CaptureRequest(key, stats).as_extra_args(), **kw)


def context(slots, seq_lens):
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext

    n = len(slots)
    idx = torch.tensor(slots)
    return LogitsContext(expanded_idx_mapping=idx, idx_mapping=idx, idx_mapping_np=np.array(slots),
                         expanded_local_pos=torch.zeros(n, dtype=torch.long), input_ids=torch.zeros(n, dtype=torch.long),
                         pos=torch.tensor(seq_lens) - 1, seq_lens_upper_bound_np=np.array(seq_lens))


def test_v2_records_captured_slots_by_step_and_leaves_logits_alone():
    proc = make_processor(prompt_lens=[4, 3, 5])
    assert proc.add_request(0, params("a", stats="full")) and proc.add_request(2, params("c"))
    from vllm import SamplingParams

    assert not proc.add_request(1, SamplingParams())  # plain request: not captured
    gen = torch.Generator().manual_seed(0)
    steps = []
    # batch positions are reordered between steps; slot 2 is still prefilling at first (seq_len 3 < 5)
    for slots, seq_lens in [([0, 1, 2], [4, 3, 3]), ([2, 0, 1], [5, 5, 4]), ([0, 2, 1], [6, 6, 5])]:
        logits = torch.randn(3, 50, generator=gen)
        before = logits.clone()
        assert proc.apply(logits, context(slots, seq_lens)) is logits and torch.equal(logits, before)
        steps.append((slots, logits))
    out = proc.store.fetch(["a", "c"])
    a, c = np.array(out["a"]["values"]), np.array(out["c"]["values"])
    assert a.shape[0] == 3 and c.shape[0] == 2  # "a": steps 0,1,2; "c": its prompt chunk was skipped
    rows_a = torch.stack([lg[s.index(0)] for s, lg in steps])
    rows_c = torch.stack([lg[s.index(2)] for s, lg in steps[1:]])
    assert np.allclose(a[:, :2], log_partition(rows_a, (1.0, 0.5)).T.numpy(), atol=1e-5)
    assert np.allclose(c[:, :2], log_partition(rows_c, (1.0, 0.5)).T.numpy(), atol=1e-5)
    dist = summarize(rows_a, (1.0, 0.5))
    assert np.allclose(a[:, 3], dist.entropy.numpy(), atol=1e-5)
    jsd = js_from_distributions(summarize(rows_a[:-1], (1.0,)), summarize(rows_a[1:], (1.0,)))
    assert np.isnan(a[0, 4]) and np.allclose(a[1:, 4], jsd.numpy(), atol=1e-5)
    assert np.isnan(c[:, 3]).all()  # energy-only request: no entropy


def test_v2_reused_slot_releases_the_previous_request():
    proc = make_processor(prompt_lens=[2])
    proc.add_request(0, params("old"))
    proc.apply(torch.randn(1, 10), context([0], [2]))
    proc.add_request(0, params("new"))  # V2 has no removal call: reuse is the signal
    assert proc.store.stats()["detached"] == 1
    proc.store.discard(["old"])
    assert proc.store.stats()["holding"] == 1  # only "new"


def test_v2_refuses_penalties_for_captured_requests():
    from spill_guard.backends.vllm.processor_v2 import SpillGuardV2LogitsProcessor
    from spill_guard.backends.vllm.requests import UnsupportedSamplingError

    with pytest.raises(UnsupportedSamplingError, match="repetition_penalty"):
        SpillGuardV2LogitsProcessor.validate_params(params("k", repetition_penalty=1.2))
    SpillGuardV2LogitsProcessor.validate_params(params("k"))  # no penalty: accepted


# -- the V1 processor with hand-built batch updates (the engine tests cover it end to end) ---------

def test_v1_processor_follows_swaps_and_moves_between_steps_with_its_cached_layout():
    # The processor caches which batch rows are captured until update_state reports a change;
    # a swap, a removal and a one-way move (vLLM condensing the batch) must each be followed.
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

    from spill_guard.backends.vllm.processor import SpillGuardLogitsProcessor

    config = SimpleNamespace(additional_config={"spill_guard": {"betas": [1.0, 0.5], "capacity": 64}})
    proc = SpillGuardLogitsProcessor(config, torch.device("cpu"), False)
    out = {"a": [], "c": []}
    proc.update_state(BatchUpdate(3, removed=[], added=[(0, params("a"), None, out["a"]),
                                                        (1, SamplingParams(), None, []),
                                                        (2, params("c"), None, out["c"])], moved=[]))
    gen = torch.Generator().manual_seed(1)
    seen = {"a": [], "c": []}
    # (batch update before the step, batch rows, where "a" and "c" sit in them)
    plan = [(None, 3, {"a": 0, "c": 2}),
            (None, 3, {"a": 0, "c": 2}),
            (BatchUpdate(3, removed=[], added=[], moved=[(0, 2, MoveDirectionality.SWAP)]), 3, {"a": 2, "c": 0}),
            (BatchUpdate(2, removed=[1], added=[], moved=[(2, 1, MoveDirectionality.UNIDIRECTIONAL)]), 2,
             {"a": 1, "c": 0})]
    for update, batch, where in plan:
        proc.update_state(update)
        logits = torch.randn(batch, 40, generator=gen)
        before = logits.clone()
        assert proc.apply(logits) is logits and torch.equal(logits, before)
        for key, row in where.items():
            seen[key].append(logits[row])
            out[key].append(7)  # the token sampled at this step
    fetched = proc.store.fetch(["a", "c"])
    for key in ("a", "c"):
        values = np.array(fetched[key]["values"])
        assert values.shape[0] == 4
        assert np.allclose(values[:, :2], log_partition(torch.stack(seen[key]), (1.0, 0.5)).T.numpy(), atol=1e-5)


def test_structured_outputs_are_refused_for_captured_requests():
    # vLLM's model runner applies the grammar bitmask to the logits before the sampler (and so before
    # any logits processor): the captured values would not be the raw logits.
    from vllm.sampling_params import StructuredOutputsParams

    from spill_guard.backends.vllm.processor import SpillGuardLogitsProcessor
    from spill_guard.backends.vllm.requests import UnsupportedSamplingError

    guided = StructuredOutputsParams(choice=["yes", "no"])
    with pytest.raises(UnsupportedSamplingError, match="structured_outputs"):
        SpillGuardLogitsProcessor.validate_params(params("k", structured_outputs=guided))
    SpillGuardLogitsProcessor.validate_params(params("k"))
