"""Score the answers of a user's unmodified ``HuggingFacePipeline`` / ``ChatHuggingFace``.

``DropInScorer`` is what :class:`~spill_guard_langchain.SpillCallbackHandler` delegates to when
built with ``model=...``. It takes the torch model and tokenizer out of the LangChain object
(duck-typed: ``chat.llm.pipeline`` or ``llm.pipeline``; langchain-huggingface is never
imported), and wraps that model's ``generate`` once with the core's
:class:`~spill_guard.capture.recorder.GenerationRecorder`. A run's start event announces the
exact prompt ids the pipeline will feed (its prompt string, or the chat template applied as
``ChatHuggingFace`` does, tokenised as the text-generation pipeline does); its end event
claims the recorded row and judges it with the guard's rule (the same ``assess`` as
:class:`SpillChatModel`), then attaches the report to the run's generation, where
:class:`SpillGuardedRunnable` and the agent middleware read it.
"""

from __future__ import annotations

from typing import Any, Hashable

from spill_guard import SpillModel
from spill_guard.capture.recorder import GenerationRecorder
from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.guard import SpillGuard, Verdict
from spill_guard.models.loader import LoadedModel
from spill_guard.policy import Flag, apply_policy
from spill_guard.report import ScoredAnswer, build_scored_answer

from spill_guard_langchain.logprobs import LOGPROBS_KEY, openai_logprobs
from spill_guard_langchain.messages import last_user_text, to_role_dicts
from spill_guard_langchain.report import REPORT_KEY, VERDICT_KEY, build_report

_FLAG = Flag()  # the handler reports; SpillGuardedRunnable / the middleware enforce


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


class DropInScorer:
    """Announce, record and judge the answers of one local HuggingFace model.

    Args:
        model: the user's ``ChatHuggingFace`` / ``HuggingFacePipeline`` (or transformers pipeline).
        guard: a :class:`SpillGuard` on the same torch model whose rule judges answers; or
        threshold / calibration / spec / locator: the rule, as for :class:`SpillChatModel`;
        name: model name for reports (default: the model's); with no threshold or calibration, the
            packaged calibration is found by this name or by the model's fingerprint (its weights),
            so the embedded model is recognised whatever path it was loaded from.
    """

    def __init__(self, model: Any, *, guard: SpillGuard | None = None, threshold: float | None = None,
                 calibration: Any = None, spec: str | None = None, locator: Any = None, name: str | None = None):
        torch_model, tokenizer, self.chat = unwrap_pipeline(model)
        if guard is not None:
            if not isinstance(guard, SpillGuard):
                raise InvalidParameterError(f"guard must be a spill_guard.SpillGuard, got {guard!r}.")
            if any(v is not None for v in (threshold, calibration, spec, locator)):
                raise InvalidParameterError("pass either guard=... or threshold/calibration/spec/locator, not both.")
            if guard.model.loaded.model is not torch_model:
                raise InvalidParameterError("guard.model wraps another torch model than model=...; build the guard "
                                            "on the pipeline's model (pipeline.model).")
            self.guard = guard
        else:
            label = name or getattr(getattr(model, "llm", model), "model_id", None) or \
                getattr(torch_model.config, "name_or_path", None) or "hf-pipeline"
            loaded = LoadedModel(model=torch_model, tokenizer=tokenizer, name=str(label),
                                 device=torch_model.device, dtype=torch_model.dtype)
            self.guard = SpillGuard(SpillModel(loaded), threshold=threshold, calibration=calibration, spec=spec,
                                    locator=locator, policy=_FLAG)
        self.tokenizer = tokenizer
        spill = self.guard.model
        self.recorder = GenerationRecorder.for_model(torch_model, tokenizer, betas=spill.betas,
                                                     stats=self.guard.capture_stats,
                                                     final_step="auto")  # the guard never reads a textless stop token's Δ
        self._questions: dict[Hashable, str] = {}

    # -- start events ------------------------------------------------------------------------
    def expect_prompt(self, run_id: Hashable, prompt: str) -> None:
        """A ``HuggingFacePipeline`` run: the pipeline tokenises the prompt string as is."""
        self._expect(run_id, prompt, prompt)

    def expect_chat(self, run_id: Hashable, messages: list[Any]) -> None:
        """A chat run: the prompt is the chat template of the messages, as ``ChatHuggingFace`` builds it."""
        question = last_user_text(to_role_dicts(messages))
        if self.chat is not None:
            prompt = self.chat._to_chat_prompt(messages)
        else:
            roles = [{"role": m["role"], "content": m["content"]} for m in to_role_dicts(messages)]
            prompt = self.tokenizer.apply_chat_template(roles, tokenize=False, add_generation_prompt=True)
        self._expect(run_id, prompt, question)

    def _expect(self, run_id: Hashable, prompt: str, question: str) -> None:
        if not isinstance(prompt, str) or not prompt:
            raise InvalidInputError(f"cannot score an empty prompt ({prompt!r}).")
        # The text-generation pipeline's preprocessing: the string as is, no special tokens added.
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        self._questions[run_id] = question
        self.recorder.expect(run_id, ids)

    # -- end events --------------------------------------------------------------------------
    def finish(self, run_id: Hashable, generation: Any) -> tuple[Verdict | None, str]:
        """Judge the run's recorded answer and attach the report to ``generation``; ``(None, why)`` if none."""
        question = self._questions.pop(run_id, "")
        claim = self.recorder.claim(run_id, getattr(generation, "text", None))
        if claim.answer is None:
            return None, claim.reason
        if claim.answer.trace is None:
            return None, claim.answer.failure or "no trace"
        scored = build_scored_answer(tokenizer=self.tokenizer, model_name=self.guard.model.loaded.name,
                                     prompt_ids=claim.answer.prompt_ids, trace=claim.answer.trace,
                                     stopped_on_eos=claim.answer.stopped_on_eos, beta=self.guard.model.beta)
        verdict = self.judge(scored, question)
        attach_report(generation, verdict, scored, self.tokenizer)
        return verdict, ""

    def judge(self, scored: ScoredAnswer, question: str) -> Verdict:
        candidate = self.guard.assess(scored, question)
        return self.guard.verdict_from(apply_policy(_FLAG, candidate), question=question)

    def forget(self, run_id: Hashable) -> None:
        self._questions.pop(run_id, None)
        self.recorder.forget(run_id)


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
