"""What a server is built from: the guard to run (:class:`GuardConfig`) and how to serve it
(:class:`ServerSettings`). Plain values, validated on construction, so the CLI, tests and a Ray
deployment build the same app from the same objects, before any model is loaded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spill_guard.backends.registry import DEFAULT_BACKEND, check_backend_name, has_async_engine
from spill_guard.errors import InvalidParameterError

POLICIES = ("flag", "abstain", "retry", "raise")
API_KEY_ENV = "SPILL_GUARD_API_KEY"
ADMIN_KEY_ENV = "SPILL_GUARD_ADMIN_KEY"


@dataclass(frozen=True)
class GuardConfig:
    """How to build the :class:`~spill_guard.SpillGuard` a server runs (loaded lazily).

    ``guard=False`` serves the same model with scoring off (no capture, no verdicts): the
    baseline the server benchmark compares against. ``redact``: regexes masked in every
    review-log record before it is written (``()`` = the default e-mail and phone patterns).
    ``backend="vllm"``: generation on vLLM's async engine (docs/vllm.md, "Serving on vLLM");
    ``engine_options`` are passed to its ``AsyncEngineArgs`` (e.g. ``{"max_model_len": 2048}``).
    """

    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    calibration: str | None = None
    threshold: float | None = None
    policy: str = "flag"
    abstain_reply: str | None = None
    retry_attempts: int = 3
    log: str | None = None
    log_all: bool = True
    redact: tuple[str, ...] | None = None
    early_stop: float | None = None
    guard: bool = True
    backend: str = DEFAULT_BACKEND
    engine_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_backend()
        if self.policy not in POLICIES:
            raise InvalidParameterError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}.")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise InvalidParameterError(f"threshold must be a finite number, got {self.threshold!r}.")
        if not isinstance(self.retry_attempts, int) or self.retry_attempts < 2:
            raise InvalidParameterError(f"retry attempts must be an integer >= 2, got {self.retry_attempts!r}.")
        if self.calibration is not None:
            if self.threshold is not None:
                raise InvalidParameterError(
                    "pass either a threshold (--threshold) or a calibration file "
                    "(--calibration), not both: the calibration already fixes the threshold."
                )
            if not os.path.isfile(self.calibration):
                raise InvalidParameterError(
                    f"calibration file {self.calibration!r} does not exist; pass the JSON "
                    "written by `spill-guard calibrate`."
                )
            self.read_calibration()  # its contents too, before any load: CalibrationFileError names the file
        if self.log is not None:
            from spill_guard.review.errors import UnsupportedLogFormatError
            from spill_guard.review.opening import sink_class

            try:
                sink_class(self.log)  # the same dispatch the guard opens the log with, before any load
            except UnsupportedLogFormatError:
                raise InvalidParameterError(
                    f"review log {self.log!r} must end in .jsonl, .sqlite, .sqlite3 or .db, or be a postgresql:// URL."
                ) from None

    def _check_backend(self) -> None:
        check_backend_name(self.backend)
        if not isinstance(self.engine_options, Mapping):
            raise InvalidParameterError(
                f"engine options must be a mapping of names to values, got {self.engine_options!r}."
            )
        if not has_async_engine(self.backend):  # served by the batcher, in-process weights
            if self.engine_options:
                raise InvalidParameterError(
                    f"engine options {dict(self.engine_options)} are vLLM settings; "
                    "add backend='vllm' (--backend vllm) or drop them."
                )
            return
        # Served on an async engine: it generates whole answers per request (no stop hooks, no plain mode).
        unavailable = {"early_stop": self.early_stop is not None, "no guard": not self.guard}
        for name, given in unavailable.items():
            if given:
                raise InvalidParameterError(
                    f"{name} is not available with the vLLM backend (--early-stop needs "
                    "transformers' stopping hooks; --no-guard serving is not implemented on "
                    "vLLM); drop it or use --backend transformers."
                )
        if self.device not in ("auto", "cpu", "cuda"):
            raise InvalidParameterError(
                f"device {self.device!r}: the vLLM backend takes auto, cpu or cuda (the vLLM "
                "build decides; pick GPUs with CUDA_VISIBLE_DEVICES)."
            )

    def load_failed(self, reason: str) -> str:
        """The message a server that stops because its model failed to load ends with (uvicorn or Ray)."""
        from spill_guard.models.embedded import DEFAULT_MODEL

        with_file = f" with calibration file {self.calibration!r}" if self.calibration else ""
        return f"loading model {self.model or DEFAULT_MODEL!r}{with_file} failed, so the server stopped: {reason}"

    def read_calibration(self) -> Any:
        """The :class:`~spill_guard.calibration.Calibration` in the ``calibration`` file (``None`` without one)."""
        from spill_guard.calibration import Calibration

        return None if self.calibration is None else Calibration.load(self.calibration)

    def build_policy(self) -> Any:
        from spill_guard.policy import Abstain, Flag, Raise, Resample, Retry

        abstain = Abstain(self.abstain_reply) if self.abstain_reply else Abstain()
        return {
            "flag": lambda: Flag(),
            "abstain": lambda: abstain,
            "retry": lambda: Retry(attempts=self.retry_attempts, strategy=Resample(temperature=0.7), fallback=abstain),
            "raise": lambda: Raise(),
        }[self.policy]()

    def build(self) -> Any:
        """Load the model and build the guard (or, with ``guard=False``, return the bare SpillModel).

        A backend with an async engine (vLLM) is loaded as that engine, and the guard holds its
        synchronous view (:meth:`~spill_guard.AsyncSpillModel.synchronous`); the server generates
        through the async facade either way (:meth:`~spill_guard.SpillModel.asynchronous`).
        """
        from spill_guard.models.loader import quiet_transformers
        from spill_guard.spill_model import AsyncSpillModel, SpillModel

        quiet_transformers()
        calibration = self.read_calibration()
        betas = () if calibration is None else (calibration.beta,)  # a spec at β != 1 needs that β captured
        if has_async_engine(self.backend):
            os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the engine's own log: warnings and errors only
            model = AsyncSpillModel.load(
                self.model,
                backend=self.backend,
                device=self.device,
                dtype=self.dtype,
                extra_betas=betas,
                engine_options=dict(self.engine_options),
            ).synchronous()
        else:
            model = SpillModel.load(
                self.model, backend=self.backend, device=self.device, dtype=self.dtype, extra_betas=betas
            )
        if not self.guard:
            return model
        try:
            return self.guard_over(model)
        except BaseException:
            model.close()  # e.g. a review log that cannot be opened: release the engine just loaded
            raise

    def guard_over(self, model: Any) -> Any:
        """The :class:`~spill_guard.SpillGuard` of this config over a loaded model (opens the review log)."""
        from spill_guard.guard import EarlyStop, SpillGuard

        early = EarlyStop(self.early_stop) if self.early_stop is not None else None
        log: Any = self.log
        if log is not None and self.redact is not None:
            from spill_guard.review import open_log, redact_patterns

            redact = redact_patterns(list(self.redact)) if self.redact else redact_patterns()  # () = the defaults
            log = open_log(log, redact=redact)
        return SpillGuard(
            model,
            threshold=self.threshold,
            calibration=self.calibration,
            policy=self.build_policy(),
            log=log,
            log_all=self.log_all,
            early_stop=early,
        )


@dataclass(frozen=True)
class ServerSettings:
    """Limits and batching of one server. Defaults are safe for a loopback deployment."""

    api_key: str | None = field(default=None, repr=False)
    #: Enables ``PUT /admin/rule`` (a new calibration or threshold at run time), sent as ``X-Admin-Key``.
    admin_key: str | None = field(default=None, repr=False)
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_tokens_limit: int = 512
    default_max_tokens: int = 64
    max_body_bytes: int = 1_000_000
    max_n: int = 8
    #: Re-read the ``GuardConfig``'s calibration file every this many seconds and roll it out when it
    #: changed (``None``: never; see :func:`spill_guard.serving.admin.watch_calibration`).
    watch_calibration_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_tokens_limit", "default_max_tokens", "max_body_bytes", "max_n"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidParameterError(f"{name.replace('_', '-')} must be an integer >= 1, got {value!r}.")
        if not isinstance(self.max_wait_ms, (int, float)) or not 0 <= self.max_wait_ms <= 10_000:
            raise InvalidParameterError(f"max-wait-ms must be between 0 and 10000, got {self.max_wait_ms!r}.")
        if self.default_max_tokens > self.max_tokens_limit:
            raise InvalidParameterError(
                f"default max tokens {self.default_max_tokens} exceeds max-tokens-limit {self.max_tokens_limit}; "
                "raise the limit or lower the default."
            )
        for what, key in (("API key", self.api_key), ("admin key", self.admin_key)):
            if key is not None and (not key.strip() or len(key) < 8):
                raise InvalidParameterError(
                    f"the {what} must be at least 8 characters; generate one, e.g. with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`."
                )
        watch = self.watch_calibration_s
        if watch is not None and (
            isinstance(watch, bool) or not isinstance(watch, (int, float)) or not 0.05 <= watch <= 3600
        ):
            raise InvalidParameterError(
                f"watch-calibration must be a number of seconds between 0.05 and 3600, got {watch!r}."
            )
        if self.admin_key is not None and self.admin_key == self.api_key:
            raise InvalidParameterError(
                "the admin key must differ from the API key: every client holds the API key, "
                "and the admin key changes the rule every client is judged by."
            )


def resolve_api_key(cli_value: str | None, env: str = API_KEY_ENV) -> str | None:
    """The command-line value wins; else the environment variable ``env`` (default
    ``SPILL_GUARD_API_KEY``); else no key."""
    if cli_value:
        return cli_value
    return os.environ.get(env) or None


def check_watch(config: GuardConfig | None, settings: ServerSettings) -> None:
    """``watch_calibration_s`` needs a calibration file to watch: a server built from a GuardConfig with one."""
    if settings.watch_calibration_s is not None and (config is None or config.calibration is None):
        raise InvalidParameterError(
            "watch_calibration_s (--watch-calibration) watches the server's calibration file: build the "
            "server from GuardConfig(calibration=FILE) (--calibration FILE), or roll out new rules with "
            "PUT /admin/rule (--admin-key)."
        )


def loaded_parts(built: Any) -> tuple[Any, Any]:
    """``(guard or None, SpillModel)`` of what :meth:`GuardConfig.build` (or a caller) supplied."""
    from spill_guard.guard import SpillGuard
    from spill_guard.spill_model import SpillModel

    if isinstance(built, SpillGuard):
        return built, built.model
    if isinstance(built, SpillModel):
        return None, built
    raise InvalidParameterError(
        f"create_app needs a SpillGuard, a SpillModel (scoring off) or a GuardConfig, got {built!r}."
    )
