"""Score the answers of a user's unmodified ``HuggingFacePipeline`` / ``ChatHuggingFace``.

``DropInScorer`` is what :class:`~spill_guard_langchain.SpillCallbackHandler` delegates to when
built with ``model=...``. It takes the torch model and tokenizer out of the LangChain object
(duck-typed: ``chat.llm.pipeline`` or ``llm.pipeline``; langchain-huggingface is never
imported), and wraps that model's ``generate`` once with the core's
:class:`~spill_guard.capture.recorder.GenerationRecorder` (through the core's
:class:`~spill_guard.guard.dropin.DropIn`). A run's start event announces the
exact prompt ids the pipeline will feed (its prompt string, or the chat template applied as
``ChatHuggingFace`` does, tokenised as the text-generation pipeline does); its end event
claims the recorded row and judges it with the guard's rule (the same ``Judge.decide`` as
:class:`SpillChatModel`, with ``Flag()``: the handler reports; SpillGuardedRunnable and the
middleware enforce), then attaches the report to the run's generation, where
:class:`SpillGuardedRunnable` and the agent middleware read it.

Retries: :class:`SpillGuardedRunnable` re-runs the chain inside the core's attempt scope
(:mod:`spill_guard.policy.attempt_scope`). The start event then announces the call's prompt as
a :class:`~spill_guard.models.prompting.Prompt` with the framework's rendering (the chat template
as ``ChatHuggingFace`` applies it, or the pipeline's prompt string), and the core's drop-in
regenerates the torch model with the attempt's prompt and sampling
(``strategy.next_attempt``), exactly as :class:`SpillChatModel` would; the verdict names the
attempt's strategy and carries the ids actually fed.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.guard import SpillGuard, Verdict
from spill_guard.guard.dropin import DropIn
from spill_guard.models.prompting import Prompt
from spill_guard.policy.attempt_scope import current_attempt
from spill_guard.report import ScoredAnswer
from spill_guard_langchain.logprobs import LOGPROBS_KEY, openai_logprobs
from spill_guard_langchain.messages import last_user_text, to_role_dicts
from spill_guard_langchain.report import REPORT_KEY, VERDICT_KEY, build_report


def unwrap_pipeline(model: Any) -> tuple[Any, Any, Any]:
    """``(torch_model, tokenizer, chat_or_None)`` of a ChatHuggingFace, HuggingFacePipeline or transformers pipeline."""
    chat = model if hasattr(model, "llm") and hasattr(model, "_to_chat_prompt") else None
    llm = model.llm if chat is not None else model
    pipe = getattr(llm, "pipeline", llm)
    torch_model, tokenizer = getattr(pipe, "model", None), getattr(pipe, "tokenizer", None)
    if torch_model is None or tokenizer is None or not callable(getattr(torch_model, "generate", None)):
        raise InvalidParameterError(
            f"model={type(model).__name__} is not a local HuggingFace text-generation model: pass a ChatHuggingFace "
            "or HuggingFacePipeline built from a transformers pipeline (pipeline('text-generation', model=..., "
            "tokenizer=...)); endpoint-backed models expose no logits."
        )
    return torch_model, tokenizer, chat


class DropInScorer(DropIn):
    """Announce, record and judge the answers of one local HuggingFace model.

    The guard, the recorder and the scoring and judging of a recorded row are the core's
    :class:`~spill_guard.guard.dropin.DropIn`; this adds LangChain's start and end events.

    Args:
        model: the user's ``ChatHuggingFace`` / ``HuggingFacePipeline`` (or transformers pipeline).
        guard: a :class:`SpillGuard` on the same torch model whose rule judges answers; or
        threshold / calibration / spec / locator: the rule, as for :class:`SpillChatModel`;
        name: model name for reports (default: the model's); with no threshold or calibration, the
            packaged calibration is found by this name or by the model's fingerprint (its weights),
            so the embedded model is recognised whatever path it was loaded from.
    """

    def __init__(
        self,
        model: Any,
        *,
        guard: SpillGuard | None = None,
        threshold: float | None = None,
        calibration: Any = None,
        spec: str | None = None,
        locator: Any = None,
        name: str | None = None,
    ):
        torch_model, tokenizer, self.chat = unwrap_pipeline(model)
        default_name = (
            getattr(getattr(model, "llm", model), "model_id", None)
            or getattr(torch_model.config, "name_or_path", None)
            or "hf-pipeline"
        )
        super().__init__(
            torch_model,
            tokenizer,
            who="SpillCallbackHandler(model=...)",
            where="pipeline.model",
            default_name=str(default_name),
            guard=guard,
            threshold=threshold,
            calibration=calibration,
            spec=spec,
            locator=locator,
            name=name,
        )
        self._questions: dict[Hashable, tuple[str, str]] = {}  # run id -> (question, strategy name)

    # -- start events ------------------------------------------------------------------------
    def expect_prompt(self, run_id: Hashable, prompt: str) -> None:
        """A ``HuggingFacePipeline`` run: the pipeline tokenises the prompt string as is.

        A retry's re-prompt adds its instruction at the end of the string (the prompt's kind ``"text"``).
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInputError(f"cannot score an empty prompt ({prompt!r}).")
        self._expect(run_id, Prompt.for_text(self.tokenizer, prompt), prompt, self._render_text)

    def expect_chat(self, run_id: Hashable, messages: list[Any]) -> None:
        """A chat run: the prompt is the chat template of the messages, as ``ChatHuggingFace`` builds it."""
        roles = [{"role": m["role"], "content": m["content"]} for m in to_role_dicts(messages)]
        question = last_user_text(roles)
        prompt = Prompt.for_chat(self.tokenizer, roles)

        def render(attempt: Prompt) -> list[int]:
            return self._ids(self._chat_text(messages, roles, attempt))

        self._expect(run_id, prompt, question, render, text=self._chat_text(messages, roles, prompt))

    def _expect(self, run_id: Hashable, prompt: Prompt, question: str, render: Any, *, text: str | None = None) -> None:
        ids = self._ids(text if text is not None else prompt.turns[-1][1])
        attempt = current_attempt()  # a retry attempt: the row is regenerated as the attempt (the core's drop-in)
        self._questions[run_id] = (question, attempt.name if attempt is not None else "greedy")
        self.expect(run_id, prompt, ids, render=render)

    def _chat_text(self, messages: Sequence[Any], roles: Sequence[dict[str, str]], prompt: Prompt) -> str:
        """The prompt string the chat model builds for ``prompt``'s turns: the call's messages (``roles``
        are their texts), a turn the attempt changed (a re-prompt) carrying its new text."""
        if self.chat is None:
            text = self.tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
        else:
            turned = [
                m if role["content"] == content else m.model_copy(update={"content": content})
                for m, role, (_, content) in zip(messages, roles, prompt.turns, strict=True)
            ]
            text = self.chat._to_chat_prompt(turned)
        if not isinstance(text, str) or not text:
            raise InvalidInputError(f"cannot score an empty prompt ({text!r}).")
        return text

    def _render_text(self, prompt: Prompt) -> list[int]:
        return self._ids(prompt.turns[-1][1])

    def _ids(self, text: str) -> list[int]:
        # The text-generation pipeline's preprocessing: the string as is, no special tokens added.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- end events --------------------------------------------------------------------------
    def finish(self, run_id: Hashable, generation: Any) -> tuple[Verdict | None, str]:
        """Judge the run's recorded answer and attach the report to ``generation``; ``(None, why)`` if none."""
        question, strategy = self._questions.pop(run_id, ("", "greedy"))
        claim = self.claim(run_id, getattr(generation, "text", None))
        if claim.answer is None:
            return None, claim.reason
        if claim.answer.trace is None:
            return None, claim.answer.failure or "no trace"
        scored = self.scored(claim.answer)
        verdict = self.judge(scored, question, strategy=strategy)
        attach_report(generation, verdict, scored, self.tokenizer)
        return verdict, ""

    def forget(self, run_id: Hashable) -> None:
        self._questions.pop(run_id, None)
        super().forget(run_id)


def attach_report(generation: Any, verdict: Verdict, scored: ScoredAnswer, tokenizer: Any) -> None:
    """Put the verdict where :func:`verdict_of` finds it, and OpenAI-format logprobs where UQLM reads them."""
    logprobs = openai_logprobs(scored, tokenizer)
    info = dict(generation.generation_info or {})
    info.update({VERDICT_KEY: verdict, LOGPROBS_KEY: logprobs})
    generation.generation_info = info
    message = getattr(generation, "message", None)
    if message is not None:  # a chat generation: the message the caller gets back is this object
        message.response_metadata[REPORT_KEY] = build_report(verdict, scored)
        message.response_metadata[LOGPROBS_KEY] = logprobs
