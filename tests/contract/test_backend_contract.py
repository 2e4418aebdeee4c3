"""The backend contract (spill_guard.backends.base), checked on every backend this environment can run.

Parametrised over the registered backends: ``transformers`` runs everywhere, ``vllm`` where vLLM is
installed (``make test`` runs this file in .venv-vllm as well; elsewhere the vLLM cases skip with
that reason). One contract, the same assertions for each:

* greedy answers' traces equal a teacher-forced pass over the same ids (the transformers backend's
  pass is the reference for every backend), including the last token's Δ;
* seeded sampling repeats; ``params.stop`` ends a row on the token completing the sequence (the text
  is cut by ``cut_at_stop``); per-row ``max_new_tokens`` hold in one batch, each row equal to its
  prompt generated alone; ``stats=None`` generates the same ids without capture; listeners see the
  values the results hold;
* stop hooks end exactly the rows they name where the backend ``stops_early``, and are refused
  (naming the capability and the backend) where it does not; every capability a backend lacks is
  refused by ``require``, the check guards, servers and integrations run when they are built.

Tolerances are the existing exactness bars: 2e-4 for transformers streaming vs teacher forcing
(tests/integration/test_embedded_model.py), 1e-4 for vLLM vs transformers (tests/vllm_backend).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from spill_guard.backends import (
    STOPS_EARLY,
    Capabilities,
    PlainAnswer,
    UnsupportedCapabilityError,
    backend_names,
    load_backend,
    require,
)
from spill_guard.errors import InvalidParameterError
from spill_guard.models.params import GenerationParams
from spill_guard.models.stops import cut_at_stop
from spill_guard.spill_model import SpillModel

pytestmark = pytest.mark.model

# In-process vLLM engine, small CPU KV cache (as tests/vllm_backend/conftest.py sets them).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
VLLM_ENGINE_OPTIONS = {"max_model_len": 1024, "seed": 0, "enforce_eager": True, "max_num_seqs": 32}

TOL = {"transformers": 2e-4, "vllm": 1e-4}
QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?", "Describe the history of Rome in detail."]


def _vllm_installed() -> bool:
    spec = importlib.util.find_spec("vllm")
    return spec is not None and spec.origin is not None


def _param(name: str):
    if name == "vllm" and not _vllm_installed():
        reason = "vllm is not installed in this environment; `make test` runs this file in .venv-vllm too"
        return pytest.param(name, marks=pytest.mark.skip(reason=reason))
    return pytest.param(name)


@pytest.fixture(scope="module")
def reference(spill_model):
    """The transformers backend (teacher-forced reference for every backend)."""
    return spill_model.backend


@pytest.fixture(scope="module", params=[_param(n) for n in backend_names()])
def backend(request, reference):
    if request.param == "transformers":
        yield reference
        return
    from spill_guard.models.loader import quiet_transformers

    quiet_transformers()
    loaded = load_backend(request.param, engine_options=VLLM_ENGINE_OPTIONS)
    yield loaded
    loaded.close()  # one engine at a time: the next module's engine needs the memory


@pytest.fixture(scope="module")
def prompts(reference):
    model = SpillModel(reference.loaded)
    return [model.prompt_ids(q) for q in QUESTIONS]


def assert_equal_traces(answers, references, tol):
    for answer, ref in zip(answers, references):
        assert answer.answer_ids == ref.answer_ids and answer.prompt_ids == ref.prompt_ids
        for field in ("token_energy", "marginal_energy", "spilled_energy"):
            got, want = np.array(getattr(answer, field)), np.array(getattr(ref, field))
            assert got.shape == want.shape and np.max(np.abs(got - want)) <= tol, (field, got - want)
        a, r = answer.trace, ref.trace
        assert np.max(np.abs(a.log_partition - r.log_partition)) <= tol
        assert np.max(np.abs(a.entropy - r.entropy)) <= tol
        assert np.max(np.abs(a.jsd_next - r.jsd_next)) <= tol  # includes JSD(p_T, p_(T+1))


def forced(reference, answers):
    return reference.score([a.prompt_ids for a in answers], [a.answer_ids for a in answers])


def test_greedy_traces_equal_a_teacher_forced_pass(backend, reference, prompts):
    answers = backend.generate(prompts, GenerationParams(max_new_tokens=16))
    assert any(a.stopped_on_eos for a in answers) and not all(a.stopped_on_eos for a in answers)  # both endings
    assert all(a.trace.final_step for a in answers)  # final_step="always": every last token has its Δ
    assert_equal_traces(answers, forced(reference, answers), TOL[backend.name])


def test_seeded_sampling_repeats(backend, prompts):
    params = GenerationParams(max_new_tokens=10, temperature=0.9, top_p=0.95, seed=11)
    first, again = (backend.generate(prompts[:1], params)[0] for _ in range(2))
    assert first.answer_ids == again.answer_ids
    np.testing.assert_allclose(first.spilled_energy, again.spilled_energy, atol=TOL[backend.name])


def test_stop_sequence_ends_its_row_on_the_completing_token(backend, reference, prompts):
    # Greedy: "The capital of France is Paris."
    rows = [GenerationParams(max_new_tokens=16, stop=(" is",)), GenerationParams(max_new_tokens=16)]
    cut, free = backend.generate(prompts[:2], rows)
    decode = reference.loaded.tokenizer.decode
    assert cut_at_stop(cut.answer, [" is"]) == ("The capital of France", " is")
    assert cut_at_stop(decode(cut.answer_ids[:-1], skip_special_tokens=True), [" is"])[1] is None  # not one token later
    assert not cut.stopped_on_eos and cut.trace.final_step
    assert len(free.answer_ids) > len(cut.answer_ids)  # the other row of the batch runs on
    assert_equal_traces([cut, free], forced(reference, [cut, free]), TOL[backend.name])


def test_per_row_max_new_tokens_in_one_batch(backend, reference, prompts):
    budgets = [3, 12, 7]
    together = backend.generate(prompts, [GenerationParams(max_new_tokens=n) for n in budgets])
    for prompt, budget, answer in zip(prompts, budgets, together):
        assert len(answer.answer_ids) <= budget
        [alone] = backend.generate([prompt], GenerationParams(max_new_tokens=budget))
        assert answer.answer_ids == alone.answer_ids and answer.stopped_on_eos == alone.stopped_on_eos
        np.testing.assert_allclose(answer.spilled_energy, alone.spilled_energy, atol=TOL[backend.name])
    assert len(together[0].answer_ids) == 3 and not together[0].stopped_on_eos
    assert_equal_traces(together, forced(reference, together), TOL[backend.name])


def test_plain_generation_makes_the_same_ids_without_capture(backend, prompts):
    params = [GenerationParams(max_new_tokens=12), GenerationParams(max_new_tokens=5, stop=("Ham",))]
    scored = backend.generate(prompts[:2], params)
    plain = backend.generate(prompts[:2], params, stats=None)
    assert all(isinstance(p, PlainAnswer) for p in plain)
    assert [p.answer_ids for p in plain] == [s.answer_ids for s in scored]
    assert [p.stopped_on_eos for p in plain] == [s.stopped_on_eos for s in scored]
    assert [p.answer for p in plain] == [s.answer for s in scored]


def test_listeners_see_the_values_the_answers_hold(backend, prompts):
    seen: dict[int, list[float]] = {}

    def listener(step):
        _, _, delta = step.energies(1.0)
        seen[step.index] = delta.tolist()

    answers = backend.generate(prompts[:2], GenerationParams(max_new_tokens=8), listeners=[listener])
    for row, answer in enumerate(answers):
        streamed = [seen[t][row] for t in range(len(answer.answer_ids))]
        np.testing.assert_allclose(streamed, answer.spilled_energy, atol=1e-9)


class EndRowAt:
    """A stop hook ending ``row`` once its answer has ``length`` tokens; records what it was shown."""

    def __init__(self, row: int, length: int):
        self.row, self.length = row, length
        self.calls: list[tuple[list, int]] = []

    def __call__(self, tokens, length):
        self.calls.append((list(tokens), length))
        return [i == self.row and length >= self.length for i in range(len(tokens))]


def test_stop_hooks_end_the_rows_they_name(backend, reference, prompts):
    hook = EndRowAt(row=2, length=4)
    if not backend.capabilities.stops_early:
        with pytest.raises(UnsupportedCapabilityError, match=rf"'{STOPS_EARLY}'.*'{backend.name}'"):
            backend.generate(prompts, GenerationParams(max_new_tokens=12), stop_hooks=[hook])
        assert hook.calls == []  # refused before anything ran
        return
    answers = backend.generate(prompts, GenerationParams(max_new_tokens=12), stop_hooks=[hook])
    [alone] = backend.generate(prompts[:1], GenerationParams(max_new_tokens=12))
    assert len(answers[2].answer_ids) == 4 and not answers[2].stopped_on_eos
    assert answers[0].answer_ids == alone.answer_ids  # the other rows are untouched
    assert [length for _, length in hook.calls] == list(range(1, len(hook.calls) + 1))
    for tokens, length in hook.calls:  # a row that ended is not asked again: its token is None
        assert (tokens[2] is None) == (length > 4)
        assert (tokens[0] is None) == (length > len(answers[0].answer_ids))
    assert_equal_traces(answers, forced(reference, answers), TOL[backend.name])


def test_capabilities_a_backend_lacks_are_refused_by_require(backend):
    model = SpillModel(backend)
    for capability in Capabilities.names():
        if backend.capabilities.has(capability):
            require(backend, capability, "this check")
            model.require(capability, "this check")
            continue
        with pytest.raises(UnsupportedCapabilityError) as refused:
            model.require(capability, "the guard's early_stop")
        message = str(refused.value)
        assert capability in message and repr(backend.name) in message and "the guard's early_stop" in message
        assert (refused.value.capability, refused.value.backend) == (capability, backend.name)


def test_teacher_forcing_where_declared(backend, reference, prompts):
    answer_ids = reference.generate(prompts[:1], GenerationParams(max_new_tokens=6))[0].answer_ids
    if backend.capabilities.teacher_forcing:
        [scored] = backend.score(prompts[:1], [answer_ids])
        assert scored.answer_ids == answer_ids
    else:
        with pytest.raises(UnsupportedCapabilityError, match="teacher_forcing"):
            backend.score(prompts[:1], [answer_ids])


def test_rows_of_one_call_draw_with_their_own_seeds_where_declared(backend, prompts):
    """``per_row_seeds``: rows with their own seeds (different prompts, or one prompt K times: a second
    opinion's samples) each equal their prompt sampled alone with that seed; else refused."""
    seeded = [GenerationParams(max_new_tokens=8, temperature=0.9, seed=s) for s in (11, 12)]
    if not backend.capabilities.per_row_seeds:
        with pytest.raises(InvalidParameterError, match="seed"):
            backend.generate(prompts[:2], seeded)
        return
    samples = [GenerationParams(max_new_tokens=8, temperature=1.0, seed=s) for s in (5, 6, 7, 2**63 - 1)]
    for batch, rows in ((prompts[:2], seeded), ([prompts[0]] * len(samples), samples)):
        together = backend.generate(batch, rows)
        for prompt, params, answer in zip(batch, rows, together):
            [alone] = backend.generate([prompt], params)
            assert answer.answer_ids == alone.answer_ids
    assert len({tuple(a.answer_ids) for a in together}) > 1  # one prompt, four seeds: the rows differ


def test_rows_of_one_call_differ_in_temperature_where_declared(backend, prompts):
    """``per_row_sampling``: rows may also differ in temperature and top_p, each equal to its prompt sampled
    alone; else refused, naming what the rows must share."""
    rows = [
        GenerationParams(max_new_tokens=8, temperature=0.7, seed=11),
        GenerationParams(max_new_tokens=8, temperature=1.2, top_p=0.9, seed=12),
    ]
    if not backend.capabilities.per_row_sampling:
        with pytest.raises(InvalidParameterError, match="temperature, top_p"):
            backend.generate(prompts[:2], rows)
        return
    together = backend.generate(prompts[:2], rows)
    for prompt, params, answer in zip(prompts[:2], rows, together):
        [alone] = backend.generate([prompt], params)
        assert answer.answer_ids == alone.answer_ids


def test_the_async_view_generates_what_the_backend_generates(backend, prompts):
    """``SpillModel.asynchronous()`` (the server's one generation path) returns the backend's own answers."""
    import asyncio

    model = SpillModel(backend)
    view = model.asynchronous()
    assert view.capabilities == backend.capabilities and view.backend.name == backend.name
    assert view.synchronous().backend is backend  # the view of a view is the original
    params = GenerationParams(max_new_tokens=6)
    awaited = asyncio.run(view.generate_params(prompts[:2], params))
    direct = backend.generate(prompts[:2], params)
    assert [a.answer_ids for a in awaited] == [d.answer_ids for d in direct]
    assert_equal_traces(awaited, direct, TOL[backend.name])
    view.backend.executor.shutdown()  # the view's worker thread only: the backend stays open for the module
