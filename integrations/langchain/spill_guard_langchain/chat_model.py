"""``SpillChatModel``: a LangChain chat model over a local model that reports spilled energy.

Every answer is scored from the raw logits of the pass that generated it (the core's
streaming capture), judged by a :class:`~spill_guard.SpillGuard` rule (threshold or
calibration), and returned with the report attached (see :mod:`spill_guard_langchain.report`).
The model itself only *reports*: it never replaces or refuses an answer. Enforcement
(retry, abstain, raise) belongs to :class:`~spill_guard_langchain.SpillGuardedRunnable` and
the agent middleware, which read this report.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from spill_guard import ScoredAnswer, SpillModel
from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.guard import SpillGuard, TokenEvent, Verdict
from spill_guard.guard.dropin import resolve_guard
from spill_guard.guard.judge import Generated
from spill_guard.guard.stream import stream_generation
from spill_guard.models.loader import LoadedModel
from spill_guard.models.params import GenerationParams
from spill_guard.models.prompting import Prompt
from spill_guard.models.stops import StreamedText, cut_at_stop
from spill_guard.observability.verdict_metrics import VerdictMetrics, resolve_metrics
from spill_guard.policy import Flag
from spill_guard_langchain.attempt import current_attempt
from spill_guard_langchain.logprobs import LOGPROBS_KEY, openai_logprobs, top_logprobs
from spill_guard_langchain.messages import to_role_dicts
from spill_guard_langchain.report import REPORT_KEY, TOKENS_KEY, VERDICT_KEY, build_report, token_entry

_FLAG = Flag()  # the model reports; only wrappers enforce


class SpillChatModel(BaseChatModel):
    """Chat model over a local HuggingFace causal LM, with a spill report on every answer.

    Build it from a :class:`~spill_guard.SpillModel` (``SpillChatModel(spill_model=sm)``),
    from nothing (the embedded SmolLM2-135M-Instruct is loaded), from an existing
    :class:`~spill_guard.SpillGuard` (its rule is used; its policy is not), or from a
    ``HuggingFacePipeline`` with :meth:`from_huggingface_pipeline`.

    ``temperature=0`` (default) decodes greedily; ``temperature > 0`` samples (``seed``
    makes it repeatable). Tool calling is not supported.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", populate_by_name=True)

    spill_model: Any = Field(default=None, description="the spill_guard.SpillModel that generates and scores")
    guard: Any = Field(default=None, description="a SpillGuard whose rule (spec, locator, threshold) judges answers")
    model_name: str | None = Field(
        default=None, alias="model", description="reported model name (default: the loaded model's)"
    )
    threshold: float | None = None
    calibration: Any = None
    spec: str | None = None
    locator: str | None = None
    max_tokens: int = Field(default=64, ge=1, description="maximum new tokens per answer")
    capture_stats: str = Field(
        default="auto",
        description="the rule guard's capture: 'auto' (energies and "
        "likelihoods when the rule needs nothing else), or 'full' to report entropy "
        "baselines too (SpillGuard's capture_stats); with guard=, the guard's own",
    )
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] | None = None
    streaming: bool = False
    logprobs: bool = Field(
        default=False, description="add OpenAI-format logprobs to response_metadata (UQLM reads them)"
    )
    top_logprobs: int | None = Field(default=None, ge=0, le=20, description="also the k most likely tokens per step")
    second_opinion: Any = Field(
        default=None,
        description="a spill_guard Consistency(...) with a cascade: answers whose one-pass risk is in its band "
        "are sampled again before the verdict (a calibration fitted with --second-opinion brings its own)",
    )
    metrics: Any = Field(
        default=None,
        description="Prometheus metrics of every answer: True (the default registry), "
        "a CollectorRegistry or a VerdictMetrics; default: the guard's, if any",
    )

    _rule_guard: SpillGuard = PrivateAttr()
    _metrics: VerdictMetrics | None = PrivateAttr(default=None)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # Built here, not in a pydantic validator, so our errors reach the caller as
        # SpillGuardError instead of being wrapped in a pydantic ValidationError.
        self._build_guard()

    def _build_guard(self) -> None:
        def build() -> SpillGuard:
            if self.spill_model is None:
                self.spill_model = SpillModel.load()
            if not isinstance(self.spill_model, SpillModel):
                raise InvalidParameterError(
                    f"spill_model must be a spill_guard.SpillModel (e.g. SpillModel.load()), got {self.spill_model!r}."
                )
            return SpillGuard(
                self.spill_model,
                threshold=self.threshold,
                calibration=self.calibration,
                spec=self.spec,
                locator=self.locator,
                policy=_FLAG,
                max_new_tokens=self.max_tokens,
                capture_stats=self.capture_stats,
                second_opinion=self.second_opinion,
            )

        self._rule_guard = resolve_guard(
            self.guard,
            who="SpillChatModel",
            build=build,
            threshold=self.threshold,
            calibration=self.calibration,
            spec=self.spec,
            locator=self.locator,
            other_rule_args={
                "capture_stats": None if self.capture_stats == "auto" else self.capture_stats,
                "second_opinion": self.second_opinion,
            },
        )
        if self.spill_model is not None and self.spill_model is not self._rule_guard.model:
            raise InvalidParameterError("spill_model differs from guard.model; pass only the guard.")
        self.spill_model = self._rule_guard.model
        if self.model_name is None:
            self.model_name = self.spill_model.loaded.name
        self._metrics = resolve_metrics(self.metrics) if self.metrics is not None else self._rule_guard.metrics

    @classmethod
    def from_huggingface_pipeline(cls, hf_pipeline: Any, **kwargs: Any) -> SpillChatModel:
        """Build from a LangChain ``HuggingFacePipeline`` (or a transformers text-generation pipeline).

        Only its ``.pipeline.model`` and ``.pipeline.tokenizer`` are taken (the pipeline's
        own generation never runs: it returns text, not the logits the scores need).
        ``kwargs`` go to the constructor (``threshold=...``, ``max_tokens=...``); a model
        without a packaged calibration needs ``threshold`` or ``calibration``.
        """
        pipe = getattr(hf_pipeline, "pipeline", hf_pipeline)
        model, tokenizer = getattr(pipe, "model", None), getattr(pipe, "tokenizer", None)
        if model is None or tokenizer is None or not hasattr(model, "generate"):
            raise InvalidParameterError(
                f"{type(hf_pipeline).__name__} has no .pipeline.model/.pipeline.tokenizer of a causal LM; pass a "
                "HuggingFacePipeline built for text generation, or use "
                "SpillChatModel(spill_model=SpillModel.load(...))."
            )
        name = getattr(hf_pipeline, "model_id", None) or getattr(model.config, "name_or_path", None) or "hf-pipeline"
        loaded = LoadedModel(
            model=model.eval(), tokenizer=tokenizer, name=str(name), device=model.device, dtype=model.dtype
        )
        spill_kwargs = {k: kwargs.pop(k) for k in ("beta", "extra_betas", "instruction", "system") if k in kwargs}
        return cls(spill_model=SpillModel(loaded, **spill_kwargs), **kwargs)

    # -- LangChain identity ----------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "spill-guard"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        rule = self._rule_guard.rule
        return {
            "model_name": self.model_name,
            "spec": rule.spec.name,
            "locator": rule.locator,
            "threshold": rule.threshold,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="spill_guard",
            ls_model_name=str(kwargs.get("model") or self.model_name),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        if stop or self.stop:
            params["ls_stop"] = list(stop or self.stop or [])
        return params

    @property
    def rule_guard(self) -> SpillGuard:
        """The guard whose rule judges answers (its policy is always ``Flag`` here)."""
        return self._rule_guard

    # -- generation ------------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt, params, strategy = self._prepare(messages, stop, kwargs)
        scored = self._generate_one(prompt, params)
        message, info = self._finish(scored, prompt, strategy, params, self._logprobs_wanted(kwargs))
        return ChatResult(generations=[ChatGeneration(message=message, generation_info=info)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        prompt, params, strategy = self._prepare(messages, stop, kwargs)
        beta = self._rule_guard.rule.spec.beta
        run = lambda listener: self._generate_one(prompt, params, [listener])  # noqa: E731
        visible = StreamedText(params.stop)
        for item in stream_generation(run, self.spill_model.tokenizer, beta):
            if isinstance(item, TokenEvent):
                # Text from a stop sequence on is cut from the content (as in invoke); energies still stream.
                text = visible.push(item.text)
                chunk = ChatGenerationChunk(
                    message=AIMessageChunk(content=text, response_metadata={TOKENS_KEY: [token_entry(item)]})
                )
                if run_manager is not None:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
                continue
            message, info = self._finish(item, prompt, strategy, params, self._logprobs_wanted(kwargs))
            tail = message.content[visible.released :]  # text held back as a possible stop-sequence prefix
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content=tail,
                    response_metadata=message.response_metadata,
                    usage_metadata=message.usage_metadata,
                    chunk_position="last",
                ),
                generation_info=info,
            )

    def _generate_one(self, prompt: Prompt, params: GenerationParams, listeners: Sequence[Any] = ()) -> ScoredAnswer:
        # The rule guard's generation: its capture, final step and early stop, as the library's answers.
        # No lock: LangChain's batch() calls this from several threads, and the core's capture
        # routes each forward pass to its own thread's capture (one hook per model), so
        # concurrent generations with one model neither race nor mix their reports.
        return self._rule_guard.generate([prompt], params, listeners=listeners)[0].scored

    def _sample(self, prompt: Prompt, params: GenerationParams) -> Generated:
        # A second opinion's sample: the rule guard's generation, as every door's.
        return self._rule_guard.generate([prompt], params)[0]

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[Prompt, GenerationParams, str]:
        """The prompt, the generation params and the attempt's strategy name.

        Inside a retry of a :class:`SpillGuardedRunnable` (or the agent middleware), the retry's
        strategy makes this attempt's prompt and params from the call's (``next_attempt``), as
        every door does.
        """
        if kwargs.get("tools") or kwargs.get("functions"):
            raise InvalidInputError("SpillChatModel does not support tool calling; use it without tools.")
        unknown = set(kwargs) - {"temperature", "top_p", "seed", "max_tokens", "stop", "logprobs", "top_logprobs"}
        if unknown:
            raise InvalidParameterError(
                f"unknown generation option(s) {sorted(unknown)}; SpillChatModel accepts temperature, top_p, seed, "
                "max_tokens, stop, logprobs, top_logprobs."
            )
        prompt = Prompt.for_chat(self.spill_model.tokenizer, to_role_dicts(messages))
        temperature = kwargs.get("temperature", self.temperature)
        params = GenerationParams(
            max_new_tokens=int(kwargs.get("max_tokens", self.max_tokens)),
            temperature=float(temperature) if temperature and temperature > 0 else 0.0,
            top_p=float(kwargs.get("top_p", self.top_p)),
            seed=kwargs.get("seed", self.seed),
            stop=tuple(stop or kwargs.get("stop") or self.stop or ()),
        )
        attempt = current_attempt()
        if attempt is None:
            return prompt, params, params.strategy
        prompt, params = attempt.strategy.next_attempt(prompt, params, attempt.number)
        return prompt, params, attempt.name

    def _logprobs_wanted(self, kwargs: dict[str, Any]) -> int | None:
        """``None``: no logprobs; else how many top alternatives per token (0 = none)."""
        top = kwargs.get("top_logprobs", self.top_logprobs)
        if not kwargs.get("logprobs", self.logprobs) and not top:
            return None
        if top is not None and (not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20):
            raise InvalidParameterError(f"top_logprobs must be an integer from 0 to 20, got {top!r}.")
        return int(top or 0)

    def _finish(
        self, scored: ScoredAnswer, prompt: Prompt, strategy: str, params: GenerationParams, top_k: int | None = None
    ) -> tuple[AIMessage, dict[str, Any]]:
        """The answer message with its report, and the generation info with the live verdict.

        Decided by the guard's one decision path under ``Flag()``; a rule with a second opinion samples
        the question through the guard's generation before the verdict (retries are the wrappers' job).
        """
        verdict: Verdict = self._rule_guard.judge.decide(
            Generated(scored),
            policy=_FLAG,
            prompt=prompt,
            params=params,
            generate=self._sample,
            generate_rows=self._rule_guard.row_generator,
            strategy=strategy,
            retry=False,
            second_opinion=current_attempt() is None,  # a wrapper's retry attempt: one pass, as the library's
        )
        if self._metrics is not None:  # a handler given the same metrics will not count it again
            self._metrics.observe_verdict(verdict)
        content, matched = cut_at_stop(scored.answer, params.stop)
        report = build_report(verdict, scored, stop_sequence=matched)
        finish = "stop" if scored.stopped_on_eos or matched else "length"
        metadata = {
            REPORT_KEY: report,
            "model_name": self.model_name,
            "finish_reason": finish,
            "model_provider": "spill_guard",
        }
        if top_k is not None:
            top = (
                top_logprobs(self.spill_model.loaded.model, scored.prompt_ids, scored.answer_ids, top_k)
                if top_k
                else None
            )
            metadata[LOGPROBS_KEY] = openai_logprobs(scored, self.spill_model.tokenizer, top)
        usage = {
            "input_tokens": len(scored.prompt_ids),
            "output_tokens": len(scored.answer_ids),
            "total_tokens": len(scored.prompt_ids) + len(scored.answer_ids),
        }
        message = AIMessage(content=content, response_metadata=metadata, usage_metadata=usage)
        return message, {VERDICT_KEY: verdict, "finish_reason": finish}
