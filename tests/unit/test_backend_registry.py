"""The backend seam without a model: the registry, capabilities and their refusals, row params, hooks' answers,
vLLM-only params and the old keyword form's translation."""

from __future__ import annotations

import pytest
import torch

from spill_guard.backends import (
    STOPS_EARLY,
    TEACHER_FORCING,
    Capabilities,
    UnsupportedCapabilityError,
    backend_names,
    check_backend_name,
    load_async_backend,
    load_backend,
    register_backend,
    require,
)
from spill_guard.backends.base import row_params, stop_flags
from spill_guard.backends.legacy import CriteriaHook, legacy_request
from spill_guard.backends.registry import _REGISTRY
from spill_guard.backends.vllm.params import VllmParams
from spill_guard.errors import InvalidParameterError
from spill_guard.models.params import GenerationParams


class GenerateOnly:
    """A backend that declares no capability beyond generation (what the vLLM backend declares)."""

    name = "generate-only"
    capabilities = Capabilities()

    def __init__(self, pad: int = 0):
        self.loaded = type("Loaded", (), {"pad_token_id": pad})()


def test_builtin_backends_are_registered_and_an_unknown_name_lists_them():
    assert backend_names()[:2] == ("transformers", "vllm")
    assert check_backend_name("vllm") == "vllm"
    with pytest.raises(InvalidParameterError, match=r"unknown backend 'vlm'; choose one of \['transformers', 'vllm'"):
        load_backend("vlm")


def test_register_backend_makes_a_name_loadable_with_explicit_options():
    seen = {}

    def loader(name_or_path, **options):
        seen.update(options, name_or_path=name_or_path)
        return GenerateOnly()

    register_backend("test-only", loader)
    try:
        assert isinstance(load_backend("test-only", "m", extra_betas=[0.5]), GenerateOnly)
        assert seen == {
            "name_or_path": "m",
            "device": "auto",
            "dtype": "auto",
            "beta": 1.0,
            "extra_betas": (0.5,),
            "engine_options": {},
        }
        with pytest.raises(InvalidParameterError, match="'test-only' backend has no async engine.*'vllm'"):
            load_async_backend("test-only")
    finally:
        del _REGISTRY["test-only"]
    with pytest.raises(InvalidParameterError, match="loader must be callable"):
        register_backend("broken", 42)


def test_transformers_refuses_engine_options_before_loading_anything():
    with pytest.raises(InvalidParameterError, match="vLLM settings; the transformers backend takes none"):
        load_backend("transformers", "/definitely/not/here", engine_options={"max_model_len": 8})


def test_require_names_the_capability_the_backend_and_the_need():
    backend = GenerateOnly()
    with pytest.raises(UnsupportedCapabilityError) as refused:
        require(backend, STOPS_EARLY, "early_stop=EarlyStop(...)")
    message = str(refused.value)
    assert (
        "'stops_early'" in message and "'generate-only' backend" in message and "early_stop=EarlyStop(...)" in message
    )
    assert isinstance(refused.value, InvalidParameterError)
    with pytest.raises(InvalidParameterError, match="unknown backend capability 'stop_early'"):
        require(backend, "stop_early", "x")
    with pytest.raises(InvalidParameterError, match="declares no capabilities"):
        require(object(), TEACHER_FORCING, "x")
    require(type("All", (), {"name": "all", "capabilities": Capabilities(True, True, True, True)})(), STOPS_EARLY, "x")
    assert Capabilities.names() == (
        "streams_steps",
        "stops_early",
        "teacher_forcing",
        "top_alternatives",
        "per_row_sampling",
        "continuous_batching",
        "per_row_seeds",
    )


def test_row_params_one_shared_or_one_per_prompt():
    p = GenerationParams(max_new_tokens=3)
    assert row_params(p, 2) == [p, p]
    assert row_params([p, p], 2) == [p, p]
    with pytest.raises(InvalidParameterError, match="2 prompts but 1 GenerationParams"):
        row_params([p], 2)
    with pytest.raises(InvalidParameterError, match="GenerationParams values"):
        row_params([p, {"max_new_tokens": 3}], 2)


def test_a_hooks_answer_becomes_one_flag_per_row():
    assert stop_flags(None, 3, "h") == stop_flags(False, 3, "h") == [False] * 3
    assert stop_flags(True, 2, "h") == [True, True]
    assert stop_flags([0, 1], 2, "h") == [False, True]
    with pytest.raises(InvalidParameterError, match="answered 1 flags for 2 rows"):
        stop_flags([True], 2, "h")


def test_vllm_params_are_generation_params_with_vllm_fields():
    base = GenerationParams(max_new_tokens=5, temperature=0.7, seed=3, stop=("\n",))
    params = VllmParams.from_options(base, {"repetition_penalty": 1.3, "presence_penalty": 0.5, "top_k": 20})
    assert isinstance(params, GenerationParams) and params.stop == ("\n",) and params.seed == 3
    assert (params.top_k, params.repetition_penalty, params.options) == (20, 1.3, (("presence_penalty", 0.5),))
    assert params.greedy_copy().repetition_penalty == 1.3  # a retry's derived params keep them
    with pytest.raises(InvalidParameterError, match="top_k must be an integer"):
        VllmParams(top_k=-1)
    with pytest.raises(InvalidParameterError, match=r"options \['max_tokens'\] are set from the GenerationParams"):
        VllmParams(options=(("max_tokens", 3),))


def test_old_keywords_become_params_and_hooks():
    backend = GenerateOnly(pad=7)
    params, hooks = legacy_request(
        backend,
        [[1, 2]],
        max_new_tokens=4,
        do_sample=False,
        temperature=1.0,
        top_p=0.5,
        seed=None,
        stop=("x",),
        stopping_criteria=None,
        engine_options={"pad_token_id": 7},
    )
    assert params == GenerationParams(max_new_tokens=4, stop=("x",)) and hooks == []
    with pytest.raises(InvalidParameterError, match=r"unknown generation option\(s\) \['top_k'\]"):
        legacy_request(
            backend,
            [[1]],
            max_new_tokens=4,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            seed=None,
            stop=(),
            stopping_criteria=None,
            engine_options={"top_k": 3},
        )
    with pytest.raises(UnsupportedCapabilityError, match="stopping_criteria"):
        legacy_request(
            backend,
            [[1]],
            max_new_tokens=4,
            do_sample=False,
            temperature=1.0,
            top_p=1.0,
            seed=None,
            stop=(),
            stopping_criteria=[lambda ids, scores: False],
            engine_options={},
        )
    with pytest.raises(InvalidParameterError, match="temperature > 0"):
        legacy_request(
            backend,
            [[1]],
            max_new_tokens=4,
            do_sample=True,
            temperature=0,
            top_p=1.0,
            seed=None,
            stop=(),
            stopping_criteria=None,
            engine_options={},
        )


def test_criteria_hook_hands_old_criteria_the_ids_generate_would():
    seen = []

    def criterion(input_ids, scores):
        seen.append(input_ids.clone())
        return torch.tensor([False, input_ids.shape[1] >= 4])

    hook = CriteriaHook([criterion, lambda ids, scores: False], [[5, 6, 7], [8]], pad_token_id=0)
    assert hook([1, 2], 1) == [False, True]
    assert hook([None, 3], 2) == [False, True]  # an ended row gets the pad token, as generate appends
    assert seen[0].tolist() == [[5, 6, 7, 1], [0, 0, 8, 2]]
    assert seen[1].tolist() == [[5, 6, 7, 1, 0], [0, 0, 8, 2, 3]]
