"""The paper's span locator: ask a model, few-shot, to copy the exact answer out of a long one.

The prompt shows a few (question, long answer, exact answer) triples, one of them with
``NO ANSWER``, then the case at hand ending in ``Exact answer:``. The completion's first
line is the extracted text; it is then found in the generation with the tolerant
:func:`~spill_guard.spans.matching.find_answer`, so the span always points at text the model
really generated — the extractor's paraphrase is never scored.

Outcomes (``LocateResult.reason``): ``FOUND``; ``EXTRACTOR_NO_ANSWER`` (the extractor says
there is none; respected, no fallback); ``EXTRACTOR_EMPTY`` or ``EXTRACTED_NOT_IN_ANSWER``
(the extraction failed; the ``fallback`` locator is tried if one was given, otherwise the
result is ``None`` — a missing span is reported, never replaced by a silent guess).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from spill_guard.errors import InvalidParameterError
from spill_guard.spans.base import LocateResult, Reason, SpanLocator
from spill_guard.spans.matching import Prefer, find_answer

NO_ANSWER = "NO ANSWER"

#: An optional instruction paragraph for capable models. Off by default: with it,
#: SmolLM2-135M answered "No" far more often (measured on a handful of cases).
INSTRUCTIONS = (
    "Copy the exact answer out of the long answer: the shortest part of the long answer that "
    f"answers the question, word for word. If the long answer does not answer the question, write {NO_ANSWER}."
)


@dataclass(frozen=True)
class FewShotExample:
    """One demonstration: ``exact`` must occur in ``long_answer``; ``None`` means NO ANSWER."""

    question: str
    long_answer: str
    exact: str | None


#: Default demonstrations (written for spill_guard): a refusal, a name, a number after
#: reasoning, a yes/no question, and an answer that is not the first entity mentioned.
#: The refusal comes first: with it last, or mentioned in a leading instruction,
#: SmolLM2-135M answered "No" to most inputs (measured); small models copy recent patterns.
DEFAULT_FEW_SHOT: tuple[FewShotExample, ...] = (
    FewShotExample(
        "What is the boiling point of the liquid Zorvane?",
        "I am not sure what Zorvane is, so I cannot tell you its boiling point.",
        None,
    ),
    FewShotExample(
        "Who wrote the novel Nineteen Eighty-Four?",
        "The novel Nineteen Eighty-Four was written by George Orwell and published in 1949.",
        "George Orwell",
    ),
    FewShotExample(
        "How many legs does a spider have?",
        "Spiders are arachnids rather than insects, so a spider has 8 legs.",
        "8",
    ),
    FewShotExample(
        "Is the Pacific Ocean larger than the Atlantic Ocean?",
        "Yes, the Pacific Ocean is larger; it is the largest ocean on Earth.",
        "Yes",
    ),
    FewShotExample(
        "In which country is the city of Kyoto?",
        "Kyoto, the former imperial capital, is located in Japan, on the island of Honshu.",
        "Japan",
    ),
)

_LABEL = re.compile(r"(?i)^\s*(?:\*\*)?exact\s+answer\s*:?(?:\*\*)?\s*:?")
_WRAPPING = "\"'`*“”‘’«» "


def _one_line(text: str) -> str:
    # The prompt is line-based ("Long answer: ..."); a multi-line answer would blur it.
    # find_answer ignores whitespace differences, so flattening costs no precision.
    return " ".join(text.split())


def build_prompt(
    answer: str,
    question: str | None,
    few_shot: Sequence[FewShotExample] = DEFAULT_FEW_SHOT,
    instructions: str | None = None,
) -> str:
    """The few-shot prompt for ``answer`` (its ``Question:`` line is left out if ``question`` is None).

    ``instructions`` (e.g. :data:`INSTRUCTIONS`) is an optional first paragraph; by default the
    demonstrations alone define the task, as in the paper's few-shot prompt.
    """
    blocks = [instructions] if instructions else []
    for ex in few_shot:
        blocks.append(
            f"Question: {_one_line(ex.question)}\nLong answer: {_one_line(ex.long_answer)}\n"
            f"Exact answer: {ex.exact if ex.exact is not None else NO_ANSWER}"
        )
    target = f"Question: {_one_line(question)}\n" if question else ""
    blocks.append(f"{target}Long answer: {_one_line(answer)}\nExact answer:")
    return "\n\n".join(blocks)


def parse_completion(completion: str) -> str | None:
    """The extracted text from a completion: ``None`` for NO ANSWER, ``""`` if nothing usable.

    Takes the first non-empty line, after dropping a repeated ``Exact answer:`` label (chat
    models often echo it); later lines are ignored because base models tend to continue with
    an invented next example. Wrapping quotes, asterisks and a trailing period are removed.
    """
    text = _LABEL.sub("", completion, count=1)
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = line.strip().strip(_WRAPPING).rstrip(".").strip(_WRAPPING)
    if re.fullmatch(r"(?i)no[\s_-]*answer\W*", line):
        return None
    return line


class LLMExtractorLocator(SpanLocator):
    """Few-shot LLM extraction of the exact answer, found back in the generation.

    Args:
        generate: a callable ``prompt -> completion`` (the text generated after the prompt;
            a completion that starts with the prompt, as some pipelines return, is cut), or a
            :class:`~spill_guard.SpillModel`. A SpillModel continues the prompt as plain
            text — no chat template, no instruction, no system message — because the
            few-shot pattern is itself the task (with the chat template SmolLM2-135M chatted
            about the question instead of copying; measured). It shares the loaded weights;
            the extraction's own scores are discarded.
        few_shot: demonstrations; each ``exact`` must be findable in its ``long_answer``.
        instructions: optional paragraph before the demonstrations (see :data:`INSTRUCTIONS`).
        fallback: locator tried when the extraction fails (empty, or not in the generation).
            Default ``None``: report no span. Not used when the extractor says NO ANSWER.
        prefer: which occurrence to take if the extracted text occurs several times.
        max_new_tokens: completion budget for a SpillModel.
    """

    def __init__(
        self,
        generate: Callable[[str], str] | Any,
        *,
        few_shot: Sequence[FewShotExample] = DEFAULT_FEW_SHOT,
        fallback: SpanLocator | None = None,
        prefer: Prefer = "last",
        max_new_tokens: int = 24,
        instructions: str | None = None,
        name: str = "llm_extractor",
    ):
        if prefer not in ("last", "first"):
            raise InvalidParameterError(f"prefer must be 'last' or 'first', got {prefer!r}.")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InvalidParameterError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}.")
        if fallback is not None and not isinstance(fallback, SpanLocator):
            raise InvalidParameterError(
                f"fallback must be a SpanLocator or None, got {fallback!r}; wrap functions in CallableLocator."
            )
        self.few_shot = tuple(_check_example(ex) for ex in few_shot)
        self.fallback = fallback
        self.prefer = prefer
        self.max_new_tokens = max_new_tokens
        self.instructions = instructions
        self.name = name
        self._complete = self._completer(generate)

    def prompt(self, answer: str, question: str | None = None) -> str:
        """The exact prompt sent to the extractor (for logging and debugging)."""
        return build_prompt(answer, question, self.few_shot, self.instructions)

    def _locate(self, answer: str, question: str | None) -> LocateResult:
        prompt = self.prompt(answer, question)
        completion = self._complete(prompt)
        if not isinstance(completion, str):
            raise InvalidParameterError(
                f"the extractor returned {type(completion).__name__} ({completion!r}); "
                "generate must map a prompt string to a completion string."
            )
        if completion.startswith(prompt):
            completion = completion[len(prompt) :]
        extracted = parse_completion(completion)
        if extracted is None:
            return LocateResult(
                None, Reason.EXTRACTOR_NO_ANSWER, self.name, "the extractor said NO ANSWER", extracted=NO_ANSWER
            )
        if not extracted:
            failed = LocateResult(
                None, Reason.EXTRACTOR_EMPTY, self.name, f"no text in the completion {completion[:80]!r}", extracted=""
            )
            return self._fall_back(answer, question, failed)
        span = find_answer(answer, extracted, prefer=self.prefer)
        if span is None:
            failed = LocateResult(
                None,
                Reason.EXTRACTED_NOT_IN_ANSWER,
                self.name,
                f"extracted {extracted!r} is not in the answer",
                extracted=extracted,
            )
            return self._fall_back(answer, question, failed)
        return self._result(span, f"extracted {extracted!r}", extracted=extracted)

    def _fall_back(self, answer: str, question: str | None, failed: LocateResult) -> LocateResult:
        if self.fallback is None:
            return failed
        result = self.fallback.locate_with_reason(answer, question=question)
        detail = f"{self.name}: {failed.detail}; fell back to {self.fallback.name}"
        if result.detail:
            detail += f" ({result.detail})"
        # The fallback decides the outcome (its name in `locator`); the failed extraction stays visible.
        return dataclasses.replace(result, detail=detail, extracted=failed.extracted)

    def _completer(self, generate: Any) -> Callable[[str], str]:
        # A SpillModel (any backend's) is recognised by what plain_completions uses, so this layer does not
        # import spill_model (which sits above it). An async model's coroutine generate_from_ids is not one.
        if isinstance(generate, CompletionModel) and not inspect.iscoroutinefunction(generate.generate_from_ids):
            sm, budget = generate, self.max_new_tokens
            return lambda prompt: plain_completions(sm, [prompt], max_new_tokens=budget)[0]
        if callable(generate):
            return generate
        raise InvalidParameterError(
            f"generate must be a callable prompt -> completion or a SpillModel, got {generate!r}."
        )


@runtime_checkable
class CompletionModel(Protocol):
    """What :func:`plain_completions` needs of a model: a :class:`~spill_guard.SpillModel` has both."""

    @property
    def tokenizer(self) -> Any: ...

    def generate_from_ids(
        self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, stopping_criteria: Any
    ) -> Any: ...


def plain_completions(sm: CompletionModel, prompts: Sequence[str], *, max_new_tokens: int = 24) -> list[str]:
    """Greedy completions of extraction prompts by a SpillModel, batched, as plain text.

    No chat template, instruction or system message: the few-shot pattern is the task.
    (Measured with SmolLM2-135M-Instruct: through the chat template it chatted about the
    question — "The answer to the question of which city..." — instead of copying.) Each
    row stops at the blank line that would start an invented next example; only the first
    line is parsed anyway. Use this to batch or cache extractions, then wrap the results in
    ``LLMExtractorLocator(lambda prompt: completions[prompt])``.
    """
    if not prompts:
        return []
    # Default tokenizer call, as the plain (non-chat) prompt path does: adds BOS where the
    # model expects one.
    ids = [list(sm.tokenizer(p)["input_ids"]) for p in prompts]
    # Prompts are left-padded to the longest, so every completion starts at that length.
    # (transformers' own stop_strings rebuilds a vocabulary table per call: seconds.)
    stop = StoppingCriteriaList([_BlankLineStop(sm.tokenizer, max(len(i) for i in ids))])
    outs = sm.generate_from_ids(ids, max_new_tokens=max_new_tokens, stopping_criteria=stop)
    return [o.answer for o in outs]


class _BlankLineStop(StoppingCriteria):
    """Per row: stop once the completion (after ``prompt_len``) contains a blank line."""

    def __init__(self, tokenizer: Any, prompt_len: int):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        done = [
            "\n\n" in self.tokenizer.decode(row[self.prompt_len :], skip_special_tokens=True).lstrip("\n")
            for row in input_ids  # leading newlines are not the end of an answer
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _check_example(ex: FewShotExample) -> FewShotExample:
    if not isinstance(ex, FewShotExample):
        raise InvalidParameterError(
            f"few_shot entries must be FewShotExample(question, long_answer, exact), got {ex!r}."
        )
    if ex.exact is not None and find_answer(ex.long_answer, ex.exact) is None:
        raise InvalidParameterError(
            f"few-shot example exact answer {ex.exact!r} does not occur in its long answer "
            f"{ex.long_answer!r}; a demonstration must show copying, so use text from the long answer."
        )
    return ex
