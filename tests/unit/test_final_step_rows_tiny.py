"""The z_(T+1) step on the rows that need it only (issue 19, item 11), on tiny random models.

Rows ended by a per-row stopping criterion (as the server's ``RowLimits`` ends them) got their
z_(T+1) from the batch's next decode step; only the row that ran to ``max_new_tokens`` needs
the extra forward. Checked: the extra forward's batch size (a real forward pre-hook), every
row's values against brute force over a no-cache forward of the unpadded row, a
sliding-window model whose window the answer outgrows, the cache ``generate`` returned left
untouched, and a cache type that cannot be viewed falling back to the whole batch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from bruteforce import bf_entropy, bf_jsd, bf_lse  # noqa: E402  (shared reference formulas)

from spill_guard import CaptureError  # noqa: E402
from spill_guard.capture import StreamingCapture, generate_with_capture  # noqa: E402
from spill_guard.capture.padding import left_pad  # noqa: E402

V = 97
PAD = 0
NO_STOP = 96
BETAS = (1.0, 0.5)
PROMPTS = [[5, 6, 7, 8, 9, 3], [10, 11], [12, 13, 14], [20, 21, 22, 23]]
N_NEW = 8
LIMITS = [3, None, 2, 5]  # row 1 alone runs to N_NEW
ATOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def single_thread(torch_single_thread):
    """One torch thread for this module (tests/conftest.py)."""


def _config(cls, **extra):
    return cls(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2, pad_token_id=PAD,
               bos_token_id=1, eos_token_id=2, **extra)


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(_config(transformers.LlamaConfig)).eval().float()


@pytest.fixture(scope="module")
def sliding():
    torch.manual_seed(1)
    model = transformers.MistralForCausalLM(_config(transformers.MistralConfig, sliding_window=3)).eval().float()
    return model


class RowLimits(transformers.StoppingCriteria):
    """Ends row ``b`` once it has ``limits[b]`` tokens (None: runs on), like the server's per-row limits."""

    def __init__(self, prompt_length: int, limits: list[int | None]):
        self.prompt_length, self.limits = prompt_length, limits

    def __call__(self, input_ids, scores, **kwargs):
        n = input_ids.shape[1] - self.prompt_length
        return torch.tensor([limit is not None and n >= limit for limit in self.limits])


class BatchSizes:
    """Batch size of every forward pass of ``model`` (a real forward pre-hook)."""

    def __init__(self, model):
        self.sizes: list[int] = []
        self.handle = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        self.sizes.append(int(kwargs.get("input_ids", args[0] if args else None).shape[0]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def run(model, stats="full", **kwargs):
    ids, mask, _ = left_pad(PROMPTS, PAD)
    with BatchSizes(model) as seen:
        cg = generate_with_capture(model, ids, mask, stop_token_ids=[NO_STOP], betas=BETAS, max_new_tokens=N_NEW,
                                   do_sample=False, pad_token_id=PAD, stats=stats,
                                   stopping_criteria=[RowLimits(ids.shape[1], LIMITS)], length_limits=lambda: LIMITS,
                                   **kwargs)
    return cg, seen.sizes


@torch.no_grad()
def check_against_brute_force(model, cg, stats):
    """Every row's trace against a no-cache forward of its unpadded prompt + answer (float64 formulas)."""
    for b, trace in enumerate(cg.traces):
        answer = trace.token_ids.tolist()
        assert NO_STOP not in answer
        window = model(input_ids=torch.tensor([PROMPTS[b] + answer]), use_cache=False).logits[0]
        window = window[len(PROMPTS[b]) - 1:].double().tolist()  # z_1 .. z_(T+1)
        n = len(answer)
        assert trace.final_step and not trace.nonfinite.any()
        np.testing.assert_allclose(trace.chosen_logit, [window[t][answer[t]] for t in range(n)], atol=ATOL, rtol=0)
        for k, beta in enumerate(BETAS):
            np.testing.assert_allclose(trace.log_partition[k], [bf_lse(w, beta) for w in window], atol=ATOL, rtol=0)
        if stats == "full":
            np.testing.assert_allclose(trace.entropy, [bf_entropy(w) for w in window[:n]], atol=ATOL, rtol=0)
            np.testing.assert_allclose(trace.jsd_next, [bf_jsd(window[t], window[t + 1]) for t in range(n)],
                                       atol=ATOL, rtol=0)


@pytest.mark.parametrize("stats", ["full", "energy"])
def test_extra_step_runs_on_the_one_row_that_reached_the_last_column(llama, stats):
    cg, sizes = run(llama, stats)
    assert cg.lengths == [3, N_NEW, 2, 5] and cg.stopped_on_eos == [False] * 4
    assert sizes == [len(PROMPTS)] * N_NEW + [1]  # prefill + N_NEW - 1 decode steps, then one row
    check_against_brute_force(llama, cg, stats)


def test_sliding_window_cache_rows_equal_brute_force(sliding):
    layers = transformers.DynamicCache(config=sliding.config).layers
    assert type(layers[0]).__name__ == "DynamicSlidingWindowLayer"  # the window is really exercised
    cg, sizes = run(sliding)
    assert sizes[-1] == 1 and cg.lengths[1] == N_NEW and len(PROMPTS[1]) + N_NEW > 3
    check_against_brute_force(sliding, cg, "full")


def test_listeners_get_the_selected_rows_next_log_partition(llama):
    steps = []
    cg, _ = run(llama, listeners=[steps.append])
    last = steps[-1]
    assert last.index == N_NEW - 1 and last.token_ids.tolist() == cg.sequences[:, -1].tolist()
    _, _, delta = last.energies(1.0)
    trace = cg.traces[1]
    assert float(delta[1]) == pytest.approx(trace.log_partition[0, -1] - trace.chosen_logit[-1], abs=1e-5)
    assert all(math.isnan(float(delta[b])) for b in (0, 2, 3))  # rows that ended earlier: nothing computed here


@pytest.mark.parametrize("rows", [[1], None])
def test_the_returned_cache_is_left_as_generate_returned_it(llama, rows):
    # The drop-in recorder hands generate's output, cache included, back to the caller.
    ids, mask, _ = left_pad(PROMPTS, PAD)
    with StreamingCapture(llama) as cap:
        out = llama.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False,
                             eos_token_id=[NO_STOP], pad_token_id=PAD, return_dict_in_generate=True)
        before = [(layer.keys, layer.values) for layer in out.cache.layers]
        length = out.cache.get_seq_length()
        cap.ensure_final_step(out.sequences, mask, out.cache, **({} if rows is None else {"rows": rows}))
    assert out.cache.get_seq_length() == length == out.sequences.shape[1] - 1
    assert all(layer.keys is k and layer.values is v for layer, (k, v) in zip(out.cache.layers, before))
    assert cap.steps == 5


def test_a_cache_that_cannot_be_viewed_gets_the_whole_batch_step(llama):
    static = transformers.StaticCache(config=llama.config, max_cache_len=32)  # room for the extra step
    cg, sizes = run(llama, cache=static)
    assert type(static.layers[0]).__name__ == "StaticLayer"
    assert sizes[-1] == len(PROMPTS)  # StaticCache: no row view, the step as before
    check_against_brute_force(llama, cg, "full")


def test_a_static_cache_made_by_generate_is_full_so_the_step_runs_without_it(llama):
    """generate sizes its static cache for prompt + max_new_tokens - 1 tokens: z_(T+1) has no slot
    there (was an IndexError from index_copy_); the step then runs as a full pass on the cut rows."""
    cg, sizes = run(llama, cache_implementation="static")
    assert sizes[-1] == 1  # only row 1 ran to the last column
    check_against_brute_force(llama, cg, "full")


def test_without_a_cache_the_full_pass_runs_on_the_selected_rows(llama):
    ids, mask, _ = left_pad(PROMPTS, PAD)
    reference, _ = run(llama)
    with StreamingCapture(llama, BETAS) as cap:
        out = llama.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                             eos_token_id=[NO_STOP], pad_token_id=PAD, return_dict_in_generate=True,
                             stopping_criteria=[RowLimits(ids.shape[1], LIMITS)])
        with BatchSizes(llama) as seen:
            cap.ensure_final_step(out.sequences, mask, None, rows=[1])
        with pytest.raises(CaptureError, match="rows"):
            cap.ensure_final_step(out.sequences[:, :-1], mask, None, rows=[7])
    assert seen.sizes == [1]
    trace = cap.traces(out.sequences[:, ids.shape[1]:], reference.lengths)[1]
    np.testing.assert_allclose(trace.log_partition, reference.traces[1].log_partition, atol=ATOL, rtol=0)
