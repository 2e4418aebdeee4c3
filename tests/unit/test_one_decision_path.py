"""The core's one decision path: frozen params, the prompt kinds, strategies that act, the judge."""

from __future__ import annotations

import pytest

from spill_guard.errors import InvalidInputError, InvalidParameterError, SpillGuardError
from spill_guard.models.params import GenerationParams, retry_seed
from spill_guard.models.prompting import Prompt, prompt_ids
from spill_guard.models.seeding import SEED_MAX
from spill_guard.policy import Reprompt, Resample, Retry, RetryStrategy


class TestGenerationParams:
    def test_defaults_are_greedy(self):
        p = GenerationParams()
        assert (p.max_new_tokens, p.temperature, p.top_p, p.seed, p.stop) == (64, 0.0, 1.0, None, ())
        assert p.greedy and p.strategy == "greedy"

    @pytest.mark.parametrize("kwargs, fragment", [
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1, got 0"),
        ({"max_new_tokens": True}, "max_new_tokens must be an integer >= 1, got True"),
        ({"max_new_tokens": 2.0}, "got 2.0"),
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"temperature": float("nan")}, "temperature must be a finite number"),
        ({"temperature": "0.7"}, "temperature must be a finite number, got '0.7'"),
        ({"top_p": 0}, "top_p must be in (0, 1]"),
        ({"top_p": 1.5}, "got 1.5"),
        ({"seed": -1}, "out of range"),
        ({"seed": SEED_MAX + 1}, "out of range"),
        ({"seed": 1.0}, "seed must be an integer or None"),
        ({"stop": [3]}, "a stop sequence must be a string, got 3"),
        ({"stop": ["\udcff"]}, "not valid Unicode"),
    ])
    def test_bad_values_are_refused_with_the_value(self, kwargs, fragment):
        with pytest.raises(SpillGuardError) as err:
            GenerationParams(**kwargs)
        assert fragment in str(err.value)

    def test_frozen_and_normalised(self):
        p = GenerationParams(temperature=1, top_p=1, stop=["\n", "", "END"])
        assert p.stop == ("\n", "END") and isinstance(p.temperature, float)
        assert GenerationParams(stop="END").stop == ("END",)
        with pytest.raises(AttributeError):
            p.seed = 3  # type: ignore[misc]

    def test_derived_params_keep_budget_and_stops(self):
        p = GenerationParams(max_new_tokens=9, stop=("x",), seed=5)
        s = p.sampled(0.7, 0.9, 11)
        assert (s.max_new_tokens, s.stop, s.temperature, s.top_p, s.seed, s.strategy) == (9, ("x",), 0.7, 0.9, 11, "sample")
        assert s.greedy_copy() == GenerationParams(max_new_tokens=9, stop=("x",), seed=11)

    def test_retry_seed_is_base_plus_attempt_wrapping_in_range(self):
        assert retry_seed(None, 2) == 2 and retry_seed(40, 3) == 43
        assert retry_seed(SEED_MAX, 2) == 1
        with pytest.raises(InvalidParameterError, match="attempt must be an integer >= 1"):
            retry_seed(0, 0)


class _Tok:
    """A tokenizer without a chat template: one id per character, enough to see the prompt text."""

    chat_template = None

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}


def _text(ids):
    return "".join(map(chr, ids))


class TestPromptKinds:
    def test_question_prompt_is_prompt_ids(self):
        tok = _Tok()
        p = Prompt.for_question(tok, "Capital of Peru?", system="Be kind.")
        assert p.ids == prompt_ids(tok, "Capital of Peru?", system="Be kind.")
        assert _text(p.ids) == "Be kind.\n\nQuestion: Capital of Peru? Answer briefly.\nAnswer:"
        assert p.question == "Capital of Peru?"

    def test_reprompt_appends_to_the_last_user_turn_after_one_space_for_every_kind(self):
        tok = _Tok()
        q = Prompt.for_question(tok, "Capital of Peru?").with_instruction("City only.")
        assert _text(q.ids) == "Question: Capital of Peru? Answer briefly. City only.\nAnswer:"
        chat = Prompt.for_chat(tok, [{"role": "user", "content": "Hi  "}, {"role": "assistant", "content": "Yes?"},
                                     {"role": "user", "content": "Capital of Peru?\n"}])
        again = chat.with_instruction("  City only. ")
        assert again.messages[-1]["content"] == "Capital of Peru? City only."
        assert again.messages[0]["content"] == "Hi  " and chat.messages[-1]["content"] == "Capital of Peru?\n"
        assert again.question == "Capital of Peru?\n"  # judged against the user's question, not the reprompt
        text = Prompt.for_text(tok, "The capital of Peru is ").with_instruction("Lima?")
        assert _text(text.ids) == "The capital of Peru is Lima?"

    def test_bad_prompts_are_refused(self):
        tok = _Tok()
        with pytest.raises(InvalidInputError, match="no non-empty user message"):
            Prompt.for_chat(tok, [{"role": "system", "content": "x"}])
        with pytest.raises(InvalidInputError, match="the prompt is empty"):
            Prompt.for_text(tok, "  ")
        with pytest.raises(InvalidInputError, match="instruction must be non-empty"):
            Prompt.for_text(tok, "x").with_instruction(" ")


class TestStrategiesAct:
    def test_resample_seeds_from_the_call_else_the_strategy(self):
        tok = _Tok()
        prompt = Prompt.for_text(tok, "x")
        same, params = Resample(0.7, 0.9, seed=100).next_attempt(prompt, GenerationParams(max_new_tokens=5), 3)
        assert same is prompt
        assert params == GenerationParams(max_new_tokens=5, temperature=0.7, top_p=0.9, seed=103)
        _, seeded = Resample(0.7, 0.9, seed=100).next_attempt(prompt, GenerationParams(seed=7), 2)
        assert seeded.seed == 9

    def test_reprompt_is_greedy_with_the_instruction(self):
        tok = _Tok()
        prompt, params = Reprompt("City only.").next_attempt(
            Prompt.for_text(tok, "Peru:"), GenerationParams(temperature=0.9, seed=4, max_new_tokens=7), 2)
        assert _text(prompt.ids) == "Peru: City only." and params.greedy and params.max_new_tokens == 7

    def test_strategies_check_their_values(self):
        with pytest.raises(InvalidParameterError, match="Resample seed"):
            Resample(seed=-3)
        with pytest.raises(InvalidParameterError, match="temperature must be a finite number"):
            Resample(temperature=float("inf"))
        with pytest.raises(InvalidParameterError, match="Reprompt needs a non-empty instruction"):
            Reprompt("")

    def test_retry_takes_any_object_that_acts_and_refuses_others(self):
        class Louder:
            name = "louder"

            def next_attempt(self, prompt, params, attempt):
                return prompt.with_instruction("!" * attempt), params

        assert isinstance(Louder(), RetryStrategy)
        Retry(attempts=2, strategy=Louder())
        with pytest.raises(InvalidParameterError, match="next_attempt"):
            Retry(attempts=2, strategy="resample")  # type: ignore[arg-type]


def test_a_strategy_that_returns_something_else_is_named_in_the_error():
    from spill_guard.guard.judge import Judge

    class Broken:
        name = "broken"

        def next_attempt(self, prompt, params, attempt):
            return prompt.ids  # not a (Prompt, GenerationParams) pair

    judge = Judge(rule=None, locator=None, model="m")  # type: ignore[arg-type]  # the check comes first
    regenerate = judge.regenerator(Prompt.for_text(_Tok(), "x"), GenerationParams(), lambda p, q: None)
    with pytest.raises(InvalidParameterError, match=r"Broken.*next_attempt.*must return a \(Prompt, GenerationParams\)"):
        regenerate(Broken(), 2)
