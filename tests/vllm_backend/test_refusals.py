"""Requests whose captured values would not be raw are refused with the reason, never mis-scored."""

from __future__ import annotations

import pytest

from vllm_support import requires_vllm

from spill_guard.backends.vllm.requests import CaptureRequest, UnsupportedSamplingError, compromising_settings
from spill_guard.errors import InvalidParameterError, SpillGuardError

pytestmark = requires_vllm


@pytest.mark.parametrize(
    "setting, value, words",
    [
        ("logit_bias", {5: 3.0}, "logit_bias"),
        ("allowed_token_ids", [1, 2, 3], "allowed_token_ids"),
        ("bad_words", ["Paris"], "bad_words"),
        ("min_tokens", 3, "min_tokens"),
    ],
)
def test_settings_applied_before_the_capture_are_refused(vllm_model, setting, value, words):
    with pytest.raises(UnsupportedSamplingError, match=words) as caught:
        vllm_model.generate("What is the capital of France?", max_new_tokens=4, **{setting: value})
    assert isinstance(caught.value, SpillGuardError) and isinstance(caught.value, ValueError)


def test_the_engine_refuses_them_too_when_sent_directly(vllm_model):
    """A client that bypasses spill_guard (e.g. the server's raw route) still cannot mis-score."""
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError  # what vLLM's server answers with HTTP 400

    params = SamplingParams(max_tokens=2, logprobs=0, logit_bias={5: 3.0},
                            extra_args=CaptureRequest("direct").as_extra_args())
    with pytest.raises(VLLMValidationError, match="logit_bias"):
        vllm_model.backend.llm.generate([{"prompt_token_ids": [1, 2, 3]}], [params], use_tqdm=False)
    plain = SamplingParams(max_tokens=2, logit_bias={5: 3.0})  # not captured: plain vLLM traffic is untouched
    assert vllm_model.backend.llm.generate([{"prompt_token_ids": [1, 2, 3]}], [plain], use_tqdm=False)


def test_penalties_are_fine_on_v1_but_refused_on_v2():
    from vllm import SamplingParams

    params = SamplingParams(repetition_penalty=1.3, presence_penalty=0.5, logprobs=0)
    assert compromising_settings(params, runner="v1") == []
    reasons = compromising_settings(params, runner="v2")
    assert any("repetition_penalty" in r for r in reasons) and any("presence_penalty" in r for r in reasons)


def test_transformers_only_hooks_are_refused(vllm_model):
    with pytest.raises(InvalidParameterError, match="stopping_criteria"):
        vllm_model.generate("Hi?", max_new_tokens=2, stopping_criteria=[object()])


def test_engine_settings_that_break_the_capture_are_refused():
    from spill_guard.backends.vllm import engine_kwargs

    with pytest.raises(InvalidParameterError, match="speculative"):
        engine_kwargs("m", speculative_config={"method": "ngram"})
    with pytest.raises(InvalidParameterError, match="raw_logprobs"):
        engine_kwargs("m", logprobs_mode="processed_logprobs")


@pytest.mark.parametrize("settings, words", [({"temperature": 0.8}, "temperature=0.8"),
                                             ({"temperature": 0.0, "repetition_penalty": 1.2}, "repetition_penalty"),
                                             ({"temperature": 0.0, "frequency_penalty": 0.3}, "frequency_penalty")])
def test_reading_the_chosen_logit_from_the_row_max_is_refused_unless_greedy_without_penalties(vllm_model, settings,
                                                                                               words):
    # The row maximum is the sampled token's logit only when the sampler takes the raw argmax.
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError

    params = SamplingParams(max_tokens=2, extra_args=CaptureRequest("max", chosen="max").as_extra_args(), **settings)
    assert any(words in r for r in compromising_settings(params))
    with pytest.raises(VLLMValidationError, match=words):
        vllm_model.backend.llm.generate([{"prompt_token_ids": [1, 2, 3]}], [params], use_tqdm=False)
    unknown = SamplingParams(max_tokens=2, temperature=0.0, extra_args={"spill_guard": {"key": "k", "chosen": "top"}})
    with pytest.raises(UnsupportedSamplingError, match="chosen='top'"):
        from spill_guard.backends.vllm.requests import check_capturable

        check_capturable(unknown)


def test_greedy_reads_the_row_max_only_when_no_other_logits_processor_is_installed():
    from types import SimpleNamespace

    from spill_guard.backends.vllm.engine import PROCESSOR, PROCESSOR_V2, greedy_reads_max

    def config(processors):
        return SimpleNamespace(model_config=SimpleNamespace(logits_processors=processors))

    assert greedy_reads_max(config([PROCESSOR])) and greedy_reads_max(config([PROCESSOR_V2]))
    # a user's processor after ours may change the greedy choice: chosen logits then come from logprobs
    assert not greedy_reads_max(config([PROCESSOR, "my_pkg.procs:NoRepeat"]))


@pytest.mark.parametrize("seed", [2**70, -1, 1.5])
def test_an_out_of_range_seed_is_refused_like_on_transformers(vllm_model, seed):
    """The library's vLLM path takes the same seeds as transformers (was: vLLM's own error, or -1 read as 'no seed')."""
    with pytest.raises(InvalidParameterError, match="seed"):
        vllm_model.generate("What is 2 + 2?", max_new_tokens=2, do_sample=True, temperature=0.7, seed=seed)
