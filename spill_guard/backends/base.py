"""The backend contract: what every engine that generates and scores answers implements.

A backend turns prompt token ids and frozen :class:`~spill_guard.models.params.GenerationParams`
into :class:`~spill_guard.ScoredAnswer` s. Everything above it (the :class:`~spill_guard.SpillModel`
facade, the guard, the server, the integrations) talks to this contract only, so none of it
imports ``transformers`` or ``vllm`` to generate or to stop generating:

* **parameters** are frozen values, one per prompt (:func:`row_params`), never ``**kwargs``;
* **listeners** (``Callable[[TokenStep], None]``) see each token's energies, during generation
  where the backend :attr:`~Capabilities.streams_steps`, else replayed once an answer is done;
* **stop hooks** (:class:`StopHook`) are asked after every chosen token whether rows end there
  (the guard's early stop, a stream's cancel); only backends that :attr:`~Capabilities.stops_early`
  take them. A row's own ``max_new_tokens`` and text ``stop`` sequences are ended by the backend;
* **capabilities** (:class:`Capabilities`) are declared once per backend and checked with
  :func:`require` when a guard, a server config or an integration is built, with an error
  (:class:`UnsupportedCapabilityError`) that names the capability, the backend and what to do.

:class:`Backend` is the synchronous contract, :class:`AsyncBackend` the one for event loops (the
same arguments; ``generate`` is a coroutine). Backend names are read in one place only:
:mod:`spill_guard.backends.registry`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

from spill_guard.capture.streaming import CAPTURE_STATS, TokenStep
from spill_guard.errors import InvalidInputError, InvalidParameterError, PromptTooLongError
from spill_guard.models.params import GenerationParams
from spill_guard.report import ScoredAnswer

#: Capability names, as :func:`require` takes them and errors print them.
STREAMS_STEPS = "streams_steps"
STOPS_EARLY = "stops_early"
TEACHER_FORCING = "teacher_forcing"
TOP_ALTERNATIVES = "top_alternatives"
PER_ROW_SAMPLING = "per_row_sampling"
PER_ROW_SEEDS = "per_row_seeds"
CONTINUOUS_BATCHING = "continuous_batching"

#: What each capability lets a caller do (for error messages).
_MEANING = {
    STREAMS_STEPS: "listeners see each token while the answer is generated",
    STOPS_EARLY: "stop hooks can end rows in the middle of a generation",
    TEACHER_FORCING: "answers made elsewhere can be scored (one teacher-forced pass)",
    TOP_ALTERNATIVES: "each token's top alternative tokens and their log-probabilities can be read",
    PER_ROW_SAMPLING: "rows of one call may differ in temperature, top_p and seed",
    PER_ROW_SEEDS: "rows of one call may differ in seed, each drawing what it would draw generated alone",
    CONTINUOUS_BATCHING: "concurrent calls share the engine's own batching",
}

#: ``stats`` values of :meth:`Backend.generate`: the capture's statistics, or ``None`` for plain
#: generation without capture (:class:`PlainAnswer` results).
GENERATE_STATS = (*CAPTURE_STATS, None)

Listener = Callable[[TokenStep], None]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond generating scored answers (all False: just that)."""

    #: Listeners see each :class:`~spill_guard.capture.TokenStep` while the answer is generated
    #: (False: they are called after generation, token by token, with the same values).
    streams_steps: bool = False
    #: Stop hooks can end rows mid-generation (False: passing any is refused).
    stops_early: bool = False
    #: :meth:`Backend.score` scores answers made elsewhere (one teacher-forced pass).
    teacher_forcing: bool = False
    #: The weights are in this process, so a teacher-forced pass can read each token's top-k alternatives.
    top_alternatives: bool = False
    #: Rows of one call may differ in temperature, top_p and seed, each sampled on its own (False: the
    #: rows of a call share them; a seed then seeds the call, whose rows still draw different tokens).
    per_row_sampling: bool = False
    #: Concurrent calls share the engine's own continuous batching (False: calls run one after
    #: another, so a server groups concurrent requests into one call itself).
    continuous_batching: bool = False
    #: Rows of one call may differ in seed (sharing temperature and top_p), and a seeded row draws what it
    #: would draw generated alone, whatever else is in the call: a question's K seeded samples are one call.
    per_row_seeds: bool = False

    def __post_init__(self) -> None:
        if self.per_row_sampling:  # rows that may differ in everything may differ in seed
            object.__setattr__(self, "per_row_seeds", True)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def has(self, capability: str) -> bool:
        if capability not in self.names():
            raise InvalidParameterError(
                f"unknown backend capability {capability!r}; the capabilities are {list(self.names())}."
            )
        return bool(getattr(self, capability))


class UnsupportedCapabilityError(InvalidParameterError):
    """A backend lacks a capability that a guard, server config or integration needs.

    ``capability``, ``backend`` and ``needed_for`` hold what the message says.
    """

    def __init__(self, capability: str, backend: str, needed_for: str):
        self.capability, self.backend, self.needed_for = capability, backend, needed_for
        super().__init__(
            f"{needed_for} needs the backend capability {capability!r} ({_MEANING.get(capability, capability)}), "
            f"which the {backend!r} backend does not have; drop {needed_for} or use a backend that has it "
            f"(the 'transformers' backend streams steps, stops early, teacher-forces and reads top alternatives)."
        )


def capabilities_of(subject: Any) -> tuple[Capabilities, str]:
    """``(capabilities, backend name)`` of a backend or of a facade holding one (``.backend``)."""
    backend = getattr(subject, "backend", subject)
    caps = getattr(backend, "capabilities", None)
    if not isinstance(caps, Capabilities):
        raise InvalidParameterError(f"{subject!r} is not a spill_guard backend or model: it declares no capabilities.")
    return caps, str(getattr(backend, "name", type(backend).__name__))


def require(subject: Any, capability: str, needed_for: str) -> None:
    """Raise :class:`UnsupportedCapabilityError` unless ``subject`` (a backend or a model holding
    one) has ``capability``. Call it where a guard, server or integration is built, not per call."""
    caps, name = capabilities_of(subject)
    if not caps.has(capability):
        raise UnsupportedCapabilityError(capability, name, needed_for)


@runtime_checkable
class StopHook(Protocol):
    """Asked after every chosen token whether generation of some rows ends there.

    ``tokens[i]`` is the token row ``i`` just chose, or ``None`` for a row that ended at an
    earlier step (it is not asked again: whatever the hook answers for it is ignored);
    ``length`` is the answer length so far, counting that token. Return ``None`` or
    ``False`` to go on, ``True`` to end every row, or one bool per row. A row a hook ends
    keeps the token it just chose as its last; its scores equal those of the same answer
    generated alone (its ``z_(T+1)`` still comes from the next decode step).

    Hooks run on the generating thread, between decode steps: keep them cheap.
    """

    def __call__(self, tokens: Sequence[int | None], length: int) -> bool | Sequence[bool] | None: ...


@dataclass(frozen=True)
class PlainAnswer:
    """One answer generated without capture (``stats=None``): the scoring-off mode of a server.

    ``answer`` is the decoded answer (special tokens dropped), before any stop-sequence cut;
    ``stopped_on_eos`` is True if it ended on a stop token (kept in ``answer_ids``).
    """

    prompt_ids: list[int]
    answer_ids: list[int]
    answer: str
    stopped_on_eos: bool


@runtime_checkable
class Backend(Protocol):
    """A synchronous engine: generates and scores answers from raw logits.

    Read-only attributes (a property or a plain attribute conforms): ``name`` (the registry name),
    ``capabilities``, ``loaded`` (tokenizer, ``stop_token_ids``, ``pad_token_id``,
    ``context_window``, ``name``), ``betas`` (the captured inverse temperatures, 1.0 always among
    them) and ``beta`` (the β of a result's per-token lists).
    """

    @property
    def name(self) -> str: ...
    @property
    def capabilities(self) -> Capabilities: ...
    @property
    def loaded(self) -> Any: ...
    @property
    def betas(self) -> tuple[float, ...]: ...
    @property
    def beta(self) -> float: ...

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: GenerationParams | Sequence[GenerationParams],
        *,
        listeners: Sequence[Listener] = (),
        stop_hooks: Sequence[StopHook] = (),
        stats: str | None = "full",
        final_step: str = "always",
    ) -> list[Any]:
        """One answer per prompt: :class:`ScoredAnswer` s, or :class:`PlainAnswer` s with ``stats=None``.

        ``params``: one for every prompt, or one per prompt. Each row ends on a stop token, at its
        own ``max_new_tokens`` (cut to fit the context window, with a warning), or on the token that
        completes one of its ``stop`` sequences (the text then still holds it: cut it with
        :func:`~spill_guard.models.stops.cut_at_stop`). ``stats``: ``"full"``, ``"energy"`` (no
        entropy or JSD) or ``None`` (no capture: listeners are refused). ``final_step``:
        ``"always"`` or ``"auto"`` (:mod:`spill_guard.capture.final_step`).
        """
        ...

    def score(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[ScoredAnswer]:
        """Teacher-forced scores of answers made elsewhere (needs :attr:`Capabilities.teacher_forcing`)."""
        ...


@runtime_checkable
class AsyncBackend(Protocol):
    """:class:`Backend` for event loops: ``generate`` and ``score`` are coroutines, same arguments."""

    name: str
    capabilities: Capabilities
    loaded: Any
    betas: tuple[float, ...]
    beta: float

    async def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: GenerationParams | Sequence[GenerationParams],
        *,
        listeners: Sequence[Listener] = (),
        stop_hooks: Sequence[StopHook] = (),
        stats: str | None = "full",
        final_step: str = "always",
    ) -> list[Any]: ...

    async def score(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[ScoredAnswer]: ...


# -- checks shared by the backends ------------------------------------------------------------
def row_params(params: GenerationParams | Sequence[GenerationParams], n_rows: int) -> list[GenerationParams]:
    """``params`` as one :class:`GenerationParams` per row (one value is shared by every row)."""
    if isinstance(params, GenerationParams):
        return [params] * n_rows
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        raise InvalidParameterError(f"params must be a GenerationParams or one per prompt, got {params!r}.")
    rows = list(params)
    if len(rows) != n_rows:
        raise InvalidParameterError(f"{n_rows} prompts but {len(rows)} GenerationParams; pass one, or one per prompt.")
    for p in rows:
        if not isinstance(p, GenerationParams):
            raise InvalidParameterError(f"params must be GenerationParams values, got {p!r}.")
    return rows


def check_prompts(prompts: Sequence[Sequence[int]]) -> list[list[int]]:
    """The prompts as lists of ints; refuses an empty batch or an empty prompt."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence) or not prompts:
        raise InvalidInputError("no prompts given; pass a non-empty list of token-id lists.")
    out = [list(p) for p in prompts]
    if min(len(p) for p in out) == 0:
        raise InvalidInputError("a prompt has no tokens; pass a non-empty question.")
    return out


def check_stats(stats: Any) -> str | None:
    if stats not in GENERATE_STATS:
        raise InvalidParameterError(
            f"stats must be one of {list(GENERATE_STATS)}, got {stats!r} "
            "('energy' skips entropy and JSD; None generates without capture)."
        )
    return stats


def check_fits(context_window: int, n_tokens: int) -> None:
    """Refuse ``n_tokens`` positions that do not fit ``context_window``."""
    if n_tokens >= context_window:
        raise PromptTooLongError(
            f"{n_tokens} tokens do not fit the model's context window of {context_window} (one more position "
            "is needed to score the last token); shorten the question or its context."
        )


def fit_budget(context_window: int, prompt_length: int, max_new_tokens: int) -> int:
    """``max_new_tokens`` cut (with a warning) so ``prompt_length`` + answer + z_(T+1) fit the window."""
    check_fits(context_window, prompt_length + 1)
    room = context_window - prompt_length - 1  # keep a position for z_(T+1)
    if max_new_tokens > room:
        warnings.warn(f"max_new_tokens={max_new_tokens} cut to {room} to fit the context window.", stacklevel=4)
    return min(max_new_tokens, room)


def stop_flags(answer: bool | Sequence[bool] | None, n_rows: int, hook: Any) -> list[bool]:
    """A :class:`StopHook`'s answer as one bool per row."""
    if answer is None or answer is False:
        return [False] * n_rows
    if answer is True:
        return [True] * n_rows
    flags = [bool(v) for v in answer]
    if len(flags) != n_rows:
        raise InvalidParameterError(
            f"stop hook {hook!r} answered {len(flags)} flags for {n_rows} rows; return "
            "None/False, True, or one bool per row."
        )
    return flags
