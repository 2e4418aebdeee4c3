"""Streaming and teacher-forced capture on a tiny randomly initialised Llama (fp32, CPU).

The reference values are brute force in float64 numpy: ``z_1..z_T`` from
``generate(output_logits=True)`` (raw, unprocessed logits) and/or a full no-cache forward
over each row's *unpadded* ``prompt + answer``, whose position ``P - 1 + i`` holds ``z_{i+1}``
(SPEC §1, teacher-forced alignment). ``z_{T+1}`` always comes from that full forward.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from spill_guard import CaptureError, SpillGuardError  # noqa: E402
from spill_guard.capture import StreamingCapture, generate_with_capture, teacher_forced_traces  # noqa: E402
from spill_guard.capture.padding import left_pad  # noqa: E402
from spill_guard.capture.step_stats import StepDistribution, validate_betas  # noqa: E402
from spill_guard.capture.trace import TokenTrace  # noqa: E402

V = 97
PAD = 0
BETAS = (1.0, 0.5, 2.0)
PROMPTS = [[5, 6, 7, 8, 9, 3], [10, 11], [12, 13, 14]]
NO_STOP = 96  # checked below never to be emitted on the greedy path
N_NEW = 8
ATOL = 1e-4
FIELDS = ("chosen_logit", "previous_logit", "log_partition", "entropy", "jsd_next")


@pytest.fixture(scope="module", autouse=True)
def single_thread(torch_single_thread):
    """One torch thread for this module (tests/conftest.py)."""


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        initializer_range=0.2,  # peaked enough that greedy choices are not near-ties
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=2,
    )
    m = transformers.LlamaForCausalLM(config).eval()
    return m.float()


@pytest.fixture(scope="module")
def batch():
    ids, mask, _ = left_pad(PROMPTS, PAD)
    return ids, mask


# ----------------------------------------------------------------------------- brute force
def _lse(row: np.ndarray, beta: float) -> float:
    v = beta * row
    m = v.max()
    return float(m + math.log(np.exp(v - m).sum()))


def _probs(row: np.ndarray) -> np.ndarray:
    return np.exp(row - _lse(row, 1.0))


def _entropy(row: np.ndarray) -> float:
    p = _probs(row)
    return float(-(p * np.log(p)).sum())


def _jsd(a: np.ndarray, b: np.ndarray) -> float:
    p, q = _probs(a), _probs(b)
    m = 0.5 * (p + q)
    return float(0.5 * (p * np.log(p / m)).sum() + 0.5 * (q * np.log(q / m)).sum())


def brute_force(window: np.ndarray, answer: list[int], betas=BETAS) -> dict:
    """Expected trace fields from ``window[i] = z_{i+1}`` (``[T + 1, V]`` float64)."""
    n = len(answer)
    assert window.shape == (n + 1, V)
    betas = validate_betas(betas)
    return {
        "chosen_logit": np.array([window[t, answer[t]] for t in range(n)]),
        "previous_logit": np.array([math.nan] + [window[t - 1, answer[t]] for t in range(1, n)]),
        "log_partition": np.array([[_lse(window[t], b) for t in range(n + 1)] for b in betas]),
        "entropy": np.array([_entropy(window[t]) for t in range(n)]),
        "jsd_next": np.array([_jsd(window[t], window[t + 1]) for t in range(n)]),
    }


@torch.no_grad()
def full_window(model, prompt: list[int], answer: list[int]) -> np.ndarray:
    """``z_1..z_{T+1}`` from one no-cache forward over the unpadded ``prompt + answer``."""
    logits = model(input_ids=torch.tensor([prompt + answer]), use_cache=False).logits[0]
    p = len(prompt)
    return logits[p - 1 : p + len(answer)].double().numpy()


def assert_trace(trace: TokenTrace, expected: dict, answer: list[int], atol: float = ATOL) -> None:
    assert trace.token_ids.tolist() == answer
    assert trace.betas == validate_betas(BETAS)
    assert trace.vocab_size == V
    assert trace.nonfinite.tolist() == [False] * (len(answer) + 1)
    for field, want in expected.items():
        got = getattr(trace, field)
        assert got.dtype == np.float64, field
        assert got.shape == want.shape, field
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, equal_nan=True, err_msg=field)


def assert_same_traces(a: TokenTrace, b: TokenTrace, atol: float = ATOL) -> None:
    assert a.token_ids.tolist() == b.token_ids.tolist()
    assert a.betas == b.betas and a.vocab_size == b.vocab_size
    np.testing.assert_array_equal(a.nonfinite, b.nonfinite)
    for field in FIELDS:
        x, y = getattr(a, field), getattr(b, field)
        assert x.shape == y.shape, field
        np.testing.assert_allclose(x, y, rtol=0, atol=atol, equal_nan=True, err_msg=field)


def expected_lengths(generated: torch.Tensor, stop_ids: list[int]) -> tuple[list[int], list[bool]]:
    lengths, stopped = [], []
    for row in generated.tolist():
        hits = [i for i, tok in enumerate(row) if tok in stop_ids]
        lengths.append(hits[0] + 1 if hits else len(row))
        stopped.append(bool(hits))
    return lengths, stopped


@torch.no_grad()
def reference_generate(model, ids, mask, stop_ids, **kwargs):
    return model.generate(
        input_ids=ids,
        attention_mask=mask,
        eos_token_id=stop_ids,
        pad_token_id=PAD,
        output_logits=True,
        output_scores=True,
        return_dict_in_generate=True,
        **kwargs,
    )


def capture(model, ids, mask, stop_ids, **kwargs):
    return generate_with_capture(model, ids, mask, stop_token_ids=stop_ids, betas=BETAS, pad_token_id=PAD, **kwargs)


GREEDY = {"max_new_tokens": N_NEW, "do_sample": False}
SAMPLED = {"max_new_tokens": N_NEW, "do_sample": True, "temperature": 0.7, "repetition_penalty": 1.5, "top_k": 20}


def greedy_reference(model, batch):
    ids, mask = batch
    ref = reference_generate(model, ids, mask, [NO_STOP], **GREEDY)
    gen = ref.sequences[:, ids.shape[1] :]
    assert gen.shape[1] == N_NEW and NO_STOP not in gen.tolist()[0] + gen.tolist()[1] + gen.tolist()[2]
    return ref, gen


# ----------------------------------------------------------------------------- (a) streaming = brute force
def _check_against_generate_logits(model, cg, ref, prompt_len):
    """z_1..z_T from generate's raw logits, z_{T+1} from a full forward of the row."""
    raw = torch.stack(ref.logits, dim=1).double().numpy()  # [B, T_max, V]
    for b, trace in enumerate(cg.traces):
        n = cg.lengths[b]
        answer = cg.sequences[b, prompt_len : prompt_len + n].tolist()
        last = full_window(model, PROMPTS[b], answer)[-1:]
        window = np.concatenate([raw[b, :n], last], axis=0)
        assert_trace(trace, brute_force(window, answer), answer)
        # Independent second reference: the whole window from the unpadded full forward.
        assert_trace(trace, brute_force(full_window(model, PROMPTS[b], answer), answer), answer)


def test_greedy_batch_matches_brute_force(model, batch):
    ids, mask = batch
    ref, gen = greedy_reference(model, batch)
    cg = capture(model, ids, mask, [NO_STOP], **GREEDY)
    assert torch.equal(cg.sequences, ref.sequences)
    assert cg.prompt_length == ids.shape[1]
    assert cg.lengths == [N_NEW] * 3 and cg.stopped_on_eos == [False] * 3
    _check_against_generate_logits(model, cg, ref, ids.shape[1])


def test_sampling_with_processors_uses_raw_logits(model, batch):
    ids, mask = batch
    torch.manual_seed(1234)
    ref = reference_generate(model, ids, mask, [NO_STOP], **SAMPLED)
    torch.manual_seed(1234)
    cg = capture(model, ids, mask, [NO_STOP], **SAMPLED)
    # The hook does not change what is generated (same seed, same tokens).
    assert torch.equal(cg.sequences, ref.sequences)
    gen = ref.sequences[:, ids.shape[1] :]
    lengths, stopped = expected_lengths(gen, [NO_STOP])
    assert cg.lengths == lengths and cg.stopped_on_eos == stopped

    # Precondition: the processed scores really differ from the raw logits at the chosen
    # tokens, so matching raw logits below is a real check.
    raw, processed = torch.stack(ref.logits, 1), torch.stack(ref.scores, 1)
    chosen_raw = raw.gather(-1, gen.unsqueeze(-1)).squeeze(-1)
    chosen_processed = processed.gather(-1, gen.unsqueeze(-1)).squeeze(-1)
    finite = torch.isfinite(chosen_processed)
    assert float((chosen_raw - chosen_processed)[finite].abs().min()) > 100 * ATOL
    for b, trace in enumerate(cg.traces):
        n = cg.lengths[b]
        np.testing.assert_allclose(trace.chosen_logit, chosen_raw[b, :n].double().numpy(), atol=ATOL, rtol=0)
    _check_against_generate_logits(model, cg, ref, ids.shape[1])


# ----------------------------------------------------------------------------- (b) teacher forcing = streaming
@pytest.mark.parametrize("mode", ["greedy", "sampled"])
def test_teacher_forced_equals_streaming(model, batch, mode):
    ids, mask = batch
    torch.manual_seed(99)
    cg = capture(model, ids, mask, [NO_STOP], **(GREEDY if mode == "greedy" else SAMPLED))
    answers = [tr.token_ids.tolist() for tr in cg.traces]
    tf = teacher_forced_traces(model, PROMPTS, answers, pad_token_id=PAD, betas=BETAS)
    assert len(tf) == len(cg.traces)
    for b, (a, s) in enumerate(zip(tf, cg.traces)):
        assert_same_traces(a, s)
        assert_trace(a, brute_force(full_window(model, PROMPTS[b], answers[b]), answers[b]), answers[b])


def test_teacher_forced_answers_of_different_lengths(model):
    answers = [[40, 41, 42, 43, 44], [7], [50, 60]]
    tf = teacher_forced_traces(model, PROMPTS, answers, pad_token_id=PAD, betas=BETAS)
    for b, tr in enumerate(tf):
        assert len(tr) == len(answers[b])
        assert_trace(tr, brute_force(full_window(model, PROMPTS[b], answers[b]), answers[b]), answers[b])


def test_teacher_forced_rejects_bad_pairs(model):
    from spill_guard import InvalidInputError

    with pytest.raises(InvalidInputError, match="2 prompts but 1"):
        teacher_forced_traces(model, PROMPTS[:2], [[5]], pad_token_id=PAD)
    with pytest.raises(InvalidInputError):
        teacher_forced_traces(model, [[5, 6]], [[]], pad_token_id=PAD)
    with pytest.raises(InvalidInputError):
        teacher_forced_traces(model, [[]], [[5]], pad_token_id=PAD)


# ----------------------------------------------------------------------------- (c) stop tokens
def _mixed_stop_id(gen: torch.Tensor) -> int:
    """A token row 1 emits at index >= 1 but row 0 never emits: some rows stop, some do not."""
    rows = gen.tolist()
    for k in range(1, N_NEW - 1):
        tok = rows[1][k]
        if tok not in rows[0] and tok not in rows[1][:k]:
            return tok
    raise AssertionError(f"no suitable stop token in {rows}")


def _check_stopped_run(model, batch, stop_ids):
    ids, mask = batch
    _, gen = greedy_reference(model, batch)
    lengths, stopped = expected_lengths(gen, stop_ids)
    cg = capture(model, ids, mask, stop_ids, **GREEDY)
    assert cg.lengths == lengths and cg.stopped_on_eos == stopped
    p = ids.shape[1]
    for b, trace in enumerate(cg.traces):
        n = lengths[b]
        answer = gen[b, :n].tolist()
        assert len(trace) == n
        if stopped[b]:
            assert answer[-1] in stop_ids  # cut at the stop token, inclusive
            assert set(cg.sequences[b, p + n :].tolist()) <= {PAD}
        assert_trace(trace, brute_force(full_window(model, PROMPTS[b], answer), answer), answer)
    return cg, lengths


def test_row_stopping_early_is_cut_at_stop_token(model, batch):
    _, gen = greedy_reference(model, batch)
    stop = _mixed_stop_id(gen)
    cg, lengths = _check_stopped_run(model, batch, [stop, NO_STOP])
    assert lengths[1] < N_NEW and lengths[0] == N_NEW  # the scenario really is mixed
    assert cg.stopped_on_eos[1] and not cg.stopped_on_eos[0]


def test_all_rows_stop_before_max_new_tokens(model, batch):
    # Every row hits a stop token by its third token, so generate ends early and the last
    # row's z_{T+1} must come from the extra forward step.
    _, gen = greedy_reference(model, batch)
    stops = sorted({gen[b, 2].item() for b in range(3)})
    cg, lengths = _check_stopped_run(model, batch, stops)
    assert all(cg.stopped_on_eos) and max(lengths) <= 3
    assert cg.sequences.shape[1] == batch[0].shape[1] + max(lengths)


def test_skipped_final_step_leaves_only_the_last_rows_next_step_values_undefined(model, batch):
    # skip_final_step_after (final_step="auto"): rows that end on such a stop token in the last column
    # get no z_(T+1); everything else equals brute force, the last token's chosen logit included.
    _, gen = greedy_reference(model, batch)
    stops = sorted({gen[b, 2].item() for b in range(3)})
    ids, mask = batch
    cg = capture(model, ids, mask, stops, skip_final_step_after=set(stops), **GREEDY)
    n_max = max(cg.lengths)
    assert all(cg.stopped_on_eos) and cg.sequences.shape[1] == ids.shape[1] + n_max
    for b, (trace, n) in enumerate(zip(cg.traces, cg.lengths)):
        prompt = [t for t, m in zip(ids[b].tolist(), mask[b].tolist()) if m]
        answer = gen[b, :n].tolist()
        want = brute_force(full_window(model, prompt, answer), answer)
        assert trace.final_step is (n < n_max)
        if n == n_max:
            assert np.isnan(trace.log_partition[:, -1]).all() and math.isnan(trace.jsd_next[-1])
            assert not trace.nonfinite.any()
            want["log_partition"][:, -1] = np.nan
            want["jsd_next"][-1] = np.nan
        assert_trace(trace, want, answer)


def test_stop_on_first_token(model, batch):
    _, gen = greedy_reference(model, batch)
    cg, lengths = _check_stopped_run(model, batch, [gen[0, 0].item()])
    assert lengths[0] == 1 and len(cg.traces[0]) == 1
    assert math.isnan(cg.traces[0].previous_logit[0])


# ----------------------------------------------------------------------------- (d) padding invariance
@pytest.mark.parametrize("scenario", ["no_stop", "mixed_stop"])
def test_each_row_equals_row_run_alone(model, batch, scenario):
    ids, mask = batch
    _, gen = greedy_reference(model, batch)
    stop_ids = [NO_STOP] if scenario == "no_stop" else [_mixed_stop_id(gen), NO_STOP]
    together = capture(model, ids, mask, stop_ids, **GREEDY)
    for b, prompt in enumerate(PROMPTS):
        alone_ids, alone_mask, _ = left_pad([prompt], PAD)
        assert bool(alone_mask.all())
        alone = capture(model, alone_ids, alone_mask, stop_ids, **GREEDY)
        assert alone.lengths[0] == together.lengths[b]
        assert_same_traces(together.traces[b], alone.traces[0])


# ----------------------------------------------------------------------------- (e) memory
def _vocab_tensors(cap: StreamingCapture) -> list[torch.Tensor]:
    found = []
    for value in vars(cap).values():
        items = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, StepDistribution):  # the previous step's distribution
            items = list(vars(value).values())
        found += [t for t in items if isinstance(t, torch.Tensor) and t.dim() and t.shape[-1] == V]
    unique = {id(t): t for t in found}  # the carried distribution's probs is one of the reused buffers
    return list(unique.values())


@pytest.mark.parametrize("max_new_tokens", [3, 12])
def test_capture_holds_only_constant_vocab_rows(model, batch, max_new_tokens):
    ids, mask = batch
    b = ids.shape[0]
    seen_during, bytes_during = [], []

    def watch(module, args, output):  # runs after the capture's hook on every forward
        held = _vocab_tensors(cap)
        seen_during.append(len(held))
        bytes_during.append(max(t.untyped_storage().nbytes() for t in held))

    with StreamingCapture(model, BETAS) as cap:
        handle = model.register_forward_hook(watch)
        try:
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                eos_token_id=[NO_STOP], pad_token_id=PAD, return_dict_in_generate=True,
            )
            cap.ensure_final_step(out.sequences, mask, out.cache)
        finally:
            handle.remove()
        assert cap.steps == max_new_tokens + 1
        held = _vocab_tensors(cap)
        # Constant memory: two raw rows (z_t, z_(t-1)), two probability buffers (this step's and the
        # carried one, alternating) and two scratch buffers reused by every step.
        expected = {id(cap._prev_logits), id(cap._prev_prev_logits), *map(id, cap._probs), *map(id, cap._scratch)}
        assert len(held) == 6 and expected == {id(t) for t in held}
        assert id(cap._prev.probs) in set(map(id, cap._probs))
        for t in held:
            assert t.shape == (b, V)
            # A clone of the last position, not a view keeping the prefill's [B, P, V] alive.
            assert t.untyped_storage().nbytes() == b * V * t.element_size()
        # Per-step history: [B] scalars, [n_betas, B] for log-partitions, nothing with V.
        n_betas = len(validate_betas(BETAS))
        for name in ("_chosen", "_previous", "_jsd", "_entropy", "_nonfinite"):
            assert all(t.shape == (b,) for t in getattr(cap, name)), name
        assert all(t.shape == (n_betas, b) for t in cap._log_partition)
    assert len(seen_during) == max_new_tokens + 1 and max(seen_during) <= 6
    assert max(bytes_during) == b * V * 4  # fp32 [B, V]: never a view of a larger output
    assert cap._prev is None and cap._prev_logits is None and cap._prev_prev_logits is None  # released on exit
    assert _vocab_tensors(cap) == []


# ----------------------------------------------------------------------------- (f) errors
def test_right_padded_prompts_are_rejected(model):
    ids = torch.tensor([[5, 6, 7], [8, 9, PAD]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    with pytest.raises(CaptureError, match="left-padded") as info:
        generate_with_capture(model, ids, mask, stop_token_ids=[NO_STOP], max_new_tokens=2, pad_token_id=PAD)
    assert isinstance(info.value, SpillGuardError)
    assert not model._forward_hooks


def test_mask_shape_mismatch_is_rejected(model, batch):
    ids, mask = batch
    with pytest.raises(CaptureError, match=r"\(3, 5\)"):
        generate_with_capture(model, ids, mask[:, 1:], stop_token_ids=[NO_STOP], max_new_tokens=2, pad_token_id=PAD)


def test_traces_without_final_step_raise(model, batch):
    ids, mask = batch
    with StreamingCapture(model) as cap:
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=3, do_sample=False,
            eos_token_id=[NO_STOP], pad_token_id=PAD, return_dict_in_generate=True,
        )
    generated = out.sequences[:, ids.shape[1] :]
    assert cap.steps == 3  # z_1..z_3: z_4 is missing
    with pytest.raises(CaptureError, match="captured 3 forward steps but 3 generated tokens need 4"):
        cap.traces(generated, [3, 3, 3])
    with pytest.raises(CaptureError):
        cap.traces(generated[:, :0], [0, 0, 0])
    with pytest.raises(CaptureError, match="inside"):
        cap.ensure_final_step(out.sequences, mask)


def test_capture_cannot_be_entered_twice(model):
    cap = StreamingCapture(model)
    with cap:
        with pytest.raises(CaptureError):
            cap.__enter__()
    assert not model._forward_hooks


# ----------------------------------------------------------------------------- (g) hook removal
def test_hook_removed_after_block(model, batch):
    ids, mask = batch
    assert not model._forward_hooks
    with StreamingCapture(model) as cap:
        assert len(model._forward_hooks) == 1
    assert not model._forward_hooks
    capture(model, ids, mask, [NO_STOP], max_new_tokens=2)
    assert not model._forward_hooks
    with pytest.raises(RuntimeError, match="boom"):
        with StreamingCapture(model):
            raise RuntimeError("boom")
    assert not model._forward_hooks
    # A capture can be reused for a second generate call, starting from scratch.
    with cap:
        model(input_ids=ids[:, -1:])
    assert cap.steps == 1 and not model._forward_hooks


def test_full_prefill_output_is_not_kept_alive(model, batch):
    # A forward without logits_to_keep returns [B, P, V]; the capture must keep a copy of
    # the last position only, not a view that pins the whole output.
    ids, mask = batch
    with StreamingCapture(model) as cap:
        out = model(input_ids=ids, attention_mask=mask)
        assert out.logits.shape == (ids.shape[0], ids.shape[1], V)
        for kept in (cap._prev_logits, cap._prev.probs):
            assert kept.shape == (ids.shape[0], V)
            assert kept.untyped_storage().nbytes() == ids.shape[0] * V * 4
        assert torch.equal(cap._prev_logits, out.logits[:, -1])


# ----------------------------------------------------------------------------- (h) threads
def test_concurrent_captures_on_one_model_stay_apart(model, batch):
    """Threads generating with one model at once each get only their own steps."""
    import threading

    ids, mask = batch
    alone = [capture(model, ids[i : i + 1], mask[i : i + 1], [NO_STOP], max_new_tokens=6) for i in range(3)]
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for _ in range(3):  # several rounds so the threads' steps interleave
                results[i] = capture(model, ids[i : i + 1], mask[i : i + 1], [NO_STOP], max_new_tokens=6)
        except BaseException as exc:  # surfaced below: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(3):
        assert_same_traces(results[i].traces[0], alone[i].traces[0])
    assert not model._forward_hooks  # the shared hook left with the last capture


def test_listeners_receive_each_token_once_with_its_energies(model, batch):
    ids, mask = batch
    steps = []
    cg = generate_with_capture(model, ids, mask, stop_token_ids=[NO_STOP], max_new_tokens=4, pad_token_id=PAD,
                               listeners=[steps.append], do_sample=False)
    assert [s.index for s in steps] == [0, 1, 2, 3]
    for t, s in enumerate(steps):
        e, f, d = s.energies(1.0)
        for row, trace in enumerate(cg.traces):
            assert int(s.token_ids[row]) == int(trace.token_ids[t])
            assert float(d[row]) == pytest.approx(trace.log_partition[0, t + 1] - trace.chosen_logit[t], abs=1e-5)
            assert float(f[row]) == pytest.approx(-trace.log_partition[0, t], abs=1e-5)


# ----------------------------------------------------------------------------- (i) energy-only stats
def test_energy_stats_match_full_capture_and_refuse_entropy_scorers(model, batch):
    from spill_guard.errors import InvalidInputError
    from spill_guard.scoring.specs import ScoreSpec

    ids, mask = batch
    full = capture(model, ids, mask, [NO_STOP], **GREEDY)
    light = capture(model, ids, mask, [NO_STOP], stats="energy", **GREEDY)
    for a, b in zip(full.traces, light.traces):
        assert a.distribution_stats and not b.distribution_stats
        np.testing.assert_array_equal(a.token_ids, b.token_ids)
        np.testing.assert_allclose(a.chosen_logit, b.chosen_logit, atol=1e-6)
        np.testing.assert_allclose(a.log_partition, b.log_partition, atol=1e-6)
        np.testing.assert_allclose(a.previous_logit, b.previous_logit, atol=1e-6, equal_nan=True)
        np.testing.assert_array_equal(a.nonfinite, b.nonfinite)
    for trace in light.traces:
        assert not trace.distribution_stats and np.isnan(trace.entropy).all() and np.isnan(trace.jsd_next).all()
        for spec in ("spilled_energy:mean", "nll:sum", "improbability:max", "spilled_energy_reference:min"):
            ScoreSpec.parse(spec).score(trace)  # energies and likelihoods still work
        for spec in ("entropy:mean", "instability:max"):
            with pytest.raises(InvalidInputError, match="stats='full'"):
                ScoreSpec.parse(spec).score(trace)
        again = TokenTrace.from_dict(trace.to_dict())
        assert not again.distribution_stats


def test_unknown_stats_mode_is_rejected(model):
    with pytest.raises(CaptureError, match="energy"):
        StreamingCapture(model, stats="cheap")
