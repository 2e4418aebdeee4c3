"""LLMExtractorLocator with scripted extractors (deterministic) and once with the real model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from spill_guard import InvalidParameterError
from spill_guard.spans import (
    DEFAULT_FEW_SHOT,
    CharSpan,
    FewShotExample,
    LLMExtractorLocator,
    NumericLocator,
    Reason,
    StripFillerLocator,
    build_prompt,
    parse_completion,
    plain_completions,
)
from spill_guard.spans.llm_extractor import _BlankLineStop


class Scripted:
    """A fake extractor: returns a fixed completion and records the prompts it saw."""

    def __init__(self, completion):
        self.completion = completion
        self.prompts: list[str] = []

    def __call__(self, prompt: str):
        self.prompts.append(prompt)
        return self.completion


def test_prompt_has_the_demonstrations_and_ends_with_the_case():
    fake = Scripted(" Rome")
    LLMExtractorLocator(fake).locate("The capital of Italy\nis Rome.", question="Capital of Italy?")
    [prompt] = fake.prompts
    assert prompt.endswith("Question: Capital of Italy?\nLong answer: The capital of Italy is Rome.\nExact answer:")
    assert prompt.count("Exact answer:") == len(DEFAULT_FEW_SHOT) + 1
    assert "Exact answer: NO ANSWER" in prompt
    assert 3 <= len(DEFAULT_FEW_SHOT) <= 5


def test_prompt_without_question_has_no_question_line_for_the_case():
    prompt = build_prompt("It is Rome.", None)
    assert prompt.endswith("\n\nLong answer: It is Rome.\nExact answer:")
    assert build_prompt("x", None, instructions="Copy it.").startswith("Copy it.\n\n")


def test_extracted_answer_is_found_at_its_last_occurrence():
    # Base models continue the pattern with an invented next example: only line one counts.
    loc = LLMExtractorLocator(Scripted(" Paris\n\nQuestion: What is 2+2?\nLong answer: 4"))
    r = loc.locate_with_reason("Paris? Yes, Paris.", question="Capital of France?")
    assert r.reason is Reason.FOUND and r.span == CharSpan(12, 17, "Paris") and r.extracted == "Paris"
    assert r.locator == "llm_extractor"


def test_extraction_without_accent_maps_to_the_generated_text():
    span = LLMExtractorLocator(Scripted(" Bogota")).locate("The capital of Colombia is Bogotá.")
    assert span == CharSpan(27, 33, "Bogotá")


def test_echoed_label_and_markup_are_removed():
    span = LLMExtractorLocator(Scripted("Exact answer: **Paris**.")).locate("It is Paris.")
    assert span == CharSpan(6, 11, "Paris")


def test_completion_that_repeats_the_prompt_is_cut():
    # Some pipelines return prompt + completion; the prompt itself contains "George Orwell".
    loc = LLMExtractorLocator(lambda prompt: prompt + " Rome\n")
    assert loc.locate("Rome, not Orwell.").text == "Rome"


def test_no_answer_gives_none_and_skips_the_fallback():
    loc = LLMExtractorLocator(Scripted(" NO ANSWER\n"), fallback=StripFillerLocator())
    r = loc.locate_with_reason("I am not sure, maybe Paris.")
    assert r.span is None and r.reason is Reason.EXTRACTOR_NO_ANSWER


def test_extracted_text_not_in_the_answer_is_reported_not_guessed():
    r = LLMExtractorLocator(Scripted(" Lyon")).locate_with_reason("The capital of France is Paris.")
    assert r.span is None and r.reason is Reason.EXTRACTED_NOT_IN_ANSWER
    assert r.extracted == "Lyon" and "'Lyon'" in r.detail


def test_fallback_is_used_when_extraction_fails_and_says_so():
    loc = LLMExtractorLocator(Scripted(" Lyon"), fallback=NumericLocator())
    r = loc.locate_with_reason("6 - 3 is 3.")
    assert r.span == CharSpan(9, 10, "3") and r.reason is Reason.FOUND
    assert r.locator == "numeric" and r.extracted == "Lyon"
    assert "'Lyon' is not in the answer" in r.detail and "fell back to numeric" in r.detail


@pytest.mark.parametrize("completion", ["", "\n\n  \n", ' ""'])
def test_empty_completion(completion):
    r = LLMExtractorLocator(Scripted(completion)).locate_with_reason("It is Paris.")
    assert r.span is None and r.reason is Reason.EXTRACTOR_EMPTY


def test_empty_generation_does_not_call_the_extractor():
    fake = Scripted(" Paris")
    r = LLMExtractorLocator(fake).locate_with_reason("  ")
    assert r.reason is Reason.EMPTY_ANSWER and fake.prompts == []


def test_bad_extractor_and_parameters_raise():
    with pytest.raises(InvalidParameterError, match=r"returned int \(42\)"):
        LLMExtractorLocator(Scripted(42)).locate("It is Paris.")
    with pytest.raises(InvalidParameterError, match="callable prompt -> completion or a SpillModel"):
        LLMExtractorLocator("gpt")
    with pytest.raises(InvalidParameterError, match="'Lyon' does not occur"):
        LLMExtractorLocator(Scripted(""), few_shot=[FewShotExample("Capital?", "It is Paris.", "Lyon")])
    with pytest.raises(InvalidParameterError, match="fallback must be a SpanLocator"):
        LLMExtractorLocator(Scripted(""), fallback=len)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="max_new_tokens.*0"):
        LLMExtractorLocator(Scripted(""), max_new_tokens=0)


@pytest.mark.parametrize(
    "completion, expected",
    [
        (" Paris\nQuestion: x", "Paris"),
        ("\n\n  Leonardo da Vinci.\n", "Leonardo da Vinci"),
        ("Exact answer: 'Rome'", "Rome"),
        ("**Exact answer:** Rome", "Rome"),
        (" NO ANSWER", None),
        ("No answer.", None),
        ("no_answer", None),
        ("No", "No"),  # a bare "No" is an extraction (a yes/no answer), not a refusal
        ("", ""),
    ],
)
def test_parse_completion(completion, expected):
    assert parse_completion(completion) == expected


class FakeSpillModel:
    """Just what plain_completions uses: a tokenizer and generate_from_ids."""

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers, self.calls = tokenizer, answers, []

    def generate_from_ids(self, ids, **kwargs):
        self.calls.append((ids, kwargs))
        return [SimpleNamespace(answer=a) for a in self.answers]


@pytest.mark.model  # needs the real tokenizer
def test_plain_completions_batches_raw_prompts_without_chat_template(spill_model):
    tok = spill_model.tokenizer
    fake = FakeSpillModel(tok, [" Paris\n\n", " NO ANSWER\n\n"])
    prompts = [build_prompt("It is Paris.", "Capital?"), build_prompt("No idea.", None)]
    assert plain_completions(fake, prompts, max_new_tokens=7) == [" Paris\n\n", " NO ANSWER\n\n"]
    [(ids, kwargs)] = fake.calls
    assert ids == [tok(p)["input_ids"] for p in prompts]  # the prompt text itself, no template
    assert "<|im_start|>" not in tok.decode(ids[0])
    assert kwargs["max_new_tokens"] == 7 and kwargs["stopping_criteria"][0].prompt_len == max(map(len, ids))
    assert plain_completions(fake, []) == [] and len(fake.calls) == 1


@pytest.mark.model  # needs the real tokenizer
def test_blank_line_stop_is_per_row(spill_model):
    tok = spill_model.tokenizer
    prompt = tok("Exact answer:")["input_ids"]
    rows = [" Paris\n\nQuestion", "\n\nParis", " Leonardo da"]
    encoded = [prompt + tok(r, add_special_tokens=False)["input_ids"] for r in rows]
    width = max(map(len, encoded))
    batch = torch.tensor([e + [tok.eos_token_id] * (width - len(e)) for e in encoded])
    done = _BlankLineStop(tok, len(prompt))(batch, torch.zeros(3, 5))
    assert done.tolist() == [True, False, False]  # leading blank lines do not end an answer


@pytest.mark.model
def test_real_embedded_model_extracts_a_clear_answer(spill_model):
    # Measured with SmolLM2-135M-Instruct (greedy, CPU): "Paris" for this case. The model
    # is weak in general (on 7 hand cases: 4 right, "Colombia" for a Bogotá answer, and
    # "Yes"/"No" twice), so the hard guarantee is only: None, or a span really in the text.
    answer = "The capital of France is Paris."
    r = LLMExtractorLocator(spill_model, max_new_tokens=8).locate_with_reason(
        answer, question="What is the capital of France?"
    )
    assert r.span is None or answer[r.span.start : r.span.end] == r.span.text
    assert r.span == CharSpan(25, 30, "Paris"), f"the embedded model now extracts {r.extracted!r} ({r.reason.value})"
