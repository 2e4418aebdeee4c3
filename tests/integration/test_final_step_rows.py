"""The z_(T+1) step runs only on the rows that need it (issue 19, item 11).

Rows that ended before the last generated column got their z_(T+1) from the batch's next
decode step; only the rows that reached the last column need the extra forward. Real embedded
model, a left-padded batch where one row is cut by ``max_new_tokens`` and the others end on
``<|im_end|>`` earlier: the extra forward must see one row, and every row's values must equal
a teacher-forced pass over its prompt + answer.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytestmark = pytest.mark.model

SHORT = ["What is the capital of France?", "Name a colour.", "What is 2+2?"]  # end on <|im_end|> early
LONG = "Write a long story about a dragon."  # runs past max_new_tokens
MAX_NEW = 16
ATOL = 2e-4  # streaming vs teacher forcing on this model (tests/integration/test_embedded_model.py)


class BatchSizes:
    """Records the batch size of every forward pass of ``model`` (a real forward pre-hook)."""

    def __init__(self, model):
        self.sizes: list[int] = []
        self.handle = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.sizes.append(int(ids.shape[0]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _prompts(spill_model):
    questions = [SHORT[0], LONG, SHORT[1], SHORT[2]]  # the cut row in the middle: padding on both sides
    return [spill_model.prompt_ids(q) for q in questions]


@pytest.mark.parametrize("mode", ["always", "auto"])
def test_extra_step_runs_only_on_the_cut_row_and_equals_teacher_forcing(spill_model, mode):
    prompts = _prompts(spill_model)
    assert len({len(p) for p in prompts}) > 1  # really padded
    with BatchSizes(spill_model.loaded.model) as seen:
        answers = spill_model.generate_from_ids(prompts, max_new_tokens=MAX_NEW, final_step=mode)
    lengths = [len(a.answer_ids) for a in answers]
    assert lengths[1] == MAX_NEW and not answers[1].stopped_on_eos
    assert all(a.stopped_on_eos and n < MAX_NEW for i, (a, n) in enumerate(zip(answers, lengths)) if i != 1)
    # prefill + MAX_NEW - 1 decode steps for the whole batch, then the extra step on the cut row alone
    assert seen.sizes == [len(prompts)] * MAX_NEW + [1]
    forced = spill_model.score_ids(prompts, [a.answer_ids for a in answers])
    for stream, tf in zip(answers, forced):
        # "always": every row has its z_(T+1) (shorter rows from the next decode step); "auto": a row that
        # ended on the textless stop token drops it, as it would generated alone (batch-invariant).
        dropped = mode == "auto" and stream.stopped_on_eos
        assert stream.trace.final_step == (not dropped)
        keep = slice(None, -1) if dropped else slice(None)
        np.testing.assert_allclose(stream.trace.log_partition[..., keep], tf.trace.log_partition[..., keep], atol=ATOL)
        np.testing.assert_allclose(stream.trace.chosen_logit, tf.trace.chosen_logit, atol=ATOL)
        np.testing.assert_allclose(stream.trace.jsd_next[keep], tf.trace.jsd_next[keep], atol=ATOL)
        np.testing.assert_allclose(stream.trace.entropy, tf.trace.entropy, atol=ATOL)
        np.testing.assert_allclose(stream.spilled_energy[keep], tf.spilled_energy[keep], atol=ATOL)
        if dropped:
            assert np.isnan(stream.spilled_energy[-1]) and np.isnan(stream.trace.jsd_next[-1])
        assert not stream.trace.nonfinite.any()


def test_stream_listener_gets_the_cut_rows_last_delta(spill_model):
    """The server path (serving/generation.py): the cut row's streamed last Δ comes from the one-row step."""
    from spill_guard.serving.generation import Row, Sampling, generate_rows

    prompts = _prompts(spill_model)
    streamed: list[list] = [[] for _ in prompts]
    rows = [Row(prompt_ids=p, max_tokens=MAX_NEW, on_token=streamed[i].append) for i, p in enumerate(prompts)]
    with BatchSizes(spill_model.loaded.model) as seen:
        outcomes = asyncio.run(generate_rows(spill_model.asynchronous(), rows, Sampling(), stats="energy", beta=1.0))
    assert seen.sizes[-1] == 1 and seen.sizes[:-1] == [len(prompts)] * (len(seen.sizes) - 1)
    forced = spill_model.score_ids(prompts, [o.answer_ids for o in outcomes])
    for out, tokens, tf in zip(outcomes, streamed, forced):
        assert [t.token_id for t in tokens] == out.answer_ids
        # final_step="auto": a row ending on the textless stop token streams its last Δ as NaN, batch or not
        keep = slice(None, -1) if out.stopped_on_eos else slice(None)
        streamed_delta = np.array([t.spilled_energy for t in tokens], dtype=float)
        np.testing.assert_allclose(streamed_delta[keep], np.array(tf.spilled_energy)[keep], atol=ATOL)
        assert np.isnan(streamed_delta[-1]) == out.stopped_on_eos
    assert len(outcomes[1].answer_ids) == MAX_NEW and np.isfinite(streamed[1][-1].spilled_energy)
