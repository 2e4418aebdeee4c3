"""``Calibration``: a fitted threshold plus everything it depends on, saved as versioned JSON.

A calibration is only valid for the model, tokenizer, prompt framing, scorer and span
locator it was fitted with; :meth:`Calibration.check_compatible` compares them with what it
is applied to. ``threshold`` is on the *risk* scale, ``risk = direction × score``; an
answer is flagged when ``risk > threshold`` (``+inf``: never flag, ``-inf``: always flag;
written as ``Infinity`` / ``-Infinity`` in the JSON).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spill_guard._version import __version__
from spill_guard.calibration.errors import CalibrationFileError, CalibrationMismatchError
from spill_guard.calibration.fingerprint import (
    ModelFingerprint,
    PromptInfo,
    TokenizerInfo,
    prompt_info,
    same_model,
    tokenizer_info,
)
from spill_guard.calibration.selection_report import SelectionReport
from spill_guard.calibration.validation import ValidationMetrics
from spill_guard.errors import InvalidParameterError, SpillGuardError
from spill_guard.scoring.specs import ScoreSpec

SCHEMA_VERSION = 1


class CalibrationMismatchWarning(UserWarning):
    """A mismatching calibration was applied anyway (``override=True``)."""


class SampleSizes(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int
    n_correct: int
    n_incorrect: int
    n_skipped: int = 0  # labelled answers left out (no span found, non-finite score)


class DataSource(BaseModel):
    """Where the labelled answers came from and how they were labelled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["task", "bench", "review-log", "arrays"]
    detail: str  # task names / folders / log path, human-readable
    label_locator: str | None = None  # span the judge read to label answers (None: labels given)
    split: str | None = None


class SecondOpinionFit(BaseModel):
    """A second opinion fitted with the threshold (``spill-guard calibrate --second-opinion K``).

    Answers whose one-pass risk lies in ``[low, high]`` are sampled ``samples`` times at
    ``temperature`` / ``top_p``; their final risk blends the risk with the samples' inconsistency
    (:class:`~spill_guard.calibration.cascade.Cascade`), and the file's ``threshold`` is on that final
    risk. ``sampled_share``: the share of the calibration answers the band sampled, the expected
    cost (each sampled question costs ``samples`` more generations).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    samples: int = Field(ge=1, le=64)
    temperature: float = Field(gt=0, le=10)
    top_p: float = Field(gt=0, le=1)
    locator: str  # the part of each answer that is compared
    equivalence: Literal["judge", "custom"]  # "custom": fitted with your equivalence; pass it again
    low: float
    high: float
    weight: float = Field(ge=0, le=1)
    budget: float = Field(gt=0, le=1)  # the largest share of answers the band was allowed to sample
    sampled_share: float = Field(ge=0, le=1)
    one_pass_auroc: float  # on the calibration answers, of the one-pass risk
    auroc: float  # of the final risk
    consistency_auroc: float  # of the inconsistency alone (every answer sampled)
    max_new_tokens: int  # of the calibration's samples


class Calibration(BaseModel):
    """A saved calibration. Build with :meth:`from_fit` (or ``FittedThreshold.to_calibration``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    spill_guard_version: str
    created_at: str
    model: str
    model_fingerprint: ModelFingerprint | None = None  # identifies the model whatever its name (None: older files)
    tokenizer: TokenizerInfo
    prompt: PromptInfo
    scorer: str
    pooling: str
    beta: float
    locator: str
    strategy: str
    target: float | None
    direction: Literal[1, -1]
    threshold: float = Field(description="flag when direction × score > threshold")
    raw_auroc: float = Field(description="AUROC of the raw score on the calibration data, before orientation")
    sample: SampleSizes
    data_source: DataSource
    metrics: ValidationMetrics
    selection: SelectionReport | None = None
    #: A second opinion fitted with the threshold (then the threshold is on its final risk); None: one pass.
    second_opinion: SecondOpinionFit | None = None

    @field_validator("threshold")
    @classmethod
    def _threshold_not_nan(cls, threshold: float) -> float:
        if threshold != threshold:  # ±Infinity are meaningful (never / always flag); NaN compares with nothing
            raise ValueError(
                "the threshold is NaN, which no risk can be compared with (Infinity: never flag, "
                "-Infinity: always flag)"
            )
        return threshold

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_fit(
        cls,
        fitted: Any,
        *,
        model: str,
        tokenizer: TokenizerInfo,
        prompt: PromptInfo,
        spec: ScoreSpec | str,
        locator: str,
        data_source: DataSource,
        n_skipped: int = 0,
        selection: SelectionReport | None = None,
        model_fingerprint: ModelFingerprint | None = None,
        second_opinion: SecondOpinionFit | None = None,
    ) -> Calibration:
        spec = ScoreSpec.parse(spec) if isinstance(spec, str) else spec
        return cls(
            spill_guard_version=__version__,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            model=model,
            model_fingerprint=model_fingerprint,
            tokenizer=tokenizer,
            prompt=prompt,
            scorer=spec.scorer,
            pooling=spec.pooling,
            beta=spec.beta,
            locator=locator,
            strategy=fitted.strategy,
            target=fitted.target,
            direction=fitted.direction,
            threshold=fitted.threshold,
            raw_auroc=fitted.raw_auroc,
            sample=SampleSizes(
                n=fitted.n, n_correct=fitted.n_correct, n_incorrect=fitted.n_incorrect, n_skipped=n_skipped
            ),
            data_source=data_source,
            metrics=fitted.metrics,
            selection=selection,
            second_opinion=second_opinion,
        )

    # -- use ----------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        """The score spec name, e.g. ``"spilled_energy:mean"``."""
        return ScoreSpec(self.scorer, self.pooling, self.beta).name

    def risk(self, score: float | ArrayLike) -> Any:
        """``direction × score``: higher = riskier, whatever the raw score's orientation."""
        if np.ndim(score) == 0:
            return self.direction * float(score)  # type: ignore[arg-type]
        return self.direction * np.asarray(score, dtype=np.float64)

    def decide(self, score: float | ArrayLike) -> Any:
        """True (flag) where ``risk(score) > threshold``; a bool for a scalar, else a bool array.

        A calibration with a :attr:`second_opinion` is refused: its threshold is on a final risk that
        needs the samples' agreement (a guard built on it draws them).
        """
        if self.second_opinion is not None:
            raise InvalidParameterError(
                "this calibration's threshold is on the second opinion's final risk, which needs sampled "
                "answers: decide with SpillGuard(calibration=...), or combine the risk and the samples' "
                "agreement with calibration.cascade().scores(risk, agreement) first."
            )
        r = self.risk(score)
        return bool(r > self.threshold) if np.ndim(r) == 0 else r > self.threshold

    def check_compatible(
        self, spill_model: Any, spec: ScoreSpec | str | None = None, locator: Any = None, *, override: bool = False
    ) -> dict[str, tuple[Any, Any]]:
        """Compare with the model, spec and locator it is applied to; ``{field: (expected, got)}``.

        ``spec`` / ``locator`` default to the calibration's own (only the model is checked).
        Raises :class:`CalibrationMismatchError` on any difference, unless ``override=True``
        (then a :class:`CalibrationMismatchWarning` is issued and the differences returned).
        """
        got_spec = self.spec if spec is None else (ScoreSpec.parse(spec) if isinstance(spec, str) else spec)
        got_spec = ScoreSpec.parse(got_spec) if isinstance(got_spec, str) else got_spec
        got_locator = (
            self.locator
            if locator is None
            else (locator if isinstance(locator, str) else getattr(locator, "name", repr(locator)))
        )
        tok = tokenizer_info(spill_model.tokenizer)
        prm = prompt_info(spill_model)
        pairs = {
            # the same model under another name (a cache path, a drop-in's label) matches by fingerprint
            "model": (
                self.model,
                self.model if same_model(self.model, self.model_fingerprint, spill_model) else spill_model.loaded.name,
            ),
            "tokenizer.vocab_size": (self.tokenizer.vocab_size, tok.vocab_size),
            "tokenizer.vocab_hash": (self.tokenizer.vocab_hash, tok.vocab_hash),
            "prompt.instruction": (self.prompt.instruction, prm.instruction),
            "prompt.system": (self.prompt.system, prm.system),
            "prompt.chat_template_hash": (self.prompt.chat_template_hash, prm.chat_template_hash),
            "scorer": (self.scorer, got_spec.scorer),
            "pooling": (self.pooling, got_spec.pooling),
            "beta": (self.beta, got_spec.beta),
            "locator": (self.locator, got_locator),
        }
        mismatches = {k: v for k, v in pairs.items() if v[0] != v[1]}
        if not mismatches:
            return {}
        listed = "; ".join(f"{k}: calibrated {e!r}, got {g!r}" for k, (e, g) in mismatches.items())
        message = (
            f"the calibration ({self.spec} on {self.locator!r}, model {self.model!r}) does not match what it is "
            f"applied to: {listed}. Its threshold would be meaningless here: recalibrate for this setup "
            "(spill-guard calibrate ...), or pass override=True to use it anyway."
        )
        if not override:
            raise CalibrationMismatchError(message, mismatches=mismatches)
        warnings.warn(message, CalibrationMismatchWarning, stacklevel=2)
        return mismatches

    def cascade(self) -> Any:
        """The :class:`~spill_guard.calibration.cascade.Cascade` of the :attr:`second_opinion` (None: one pass)."""
        from spill_guard.calibration.cascade import Cascade

        fit = self.second_opinion
        return None if fit is None else Cascade(fit.low, fit.high, fit.weight)

    def consistency(self, equivalence: Any = None) -> Any:
        """The :class:`~spill_guard.calibration.consistency.Consistency` a guard draws the second opinion
        with (None: one pass). A file fitted with your own equivalence (``"custom"``) needs it again."""
        from spill_guard.calibration.consistency import Consistency

        fit = self.second_opinion
        if fit is None:
            return None
        if fit.equivalence == "custom" and equivalence is None:
            raise InvalidParameterError(
                "this calibration's second opinion was fitted with your own equivalence of answers; pass it "
                "again: SpillGuard(calibration=..., second_opinion=Consistency(samples=..., equivalence=...))."
            )
        return Consistency(
            samples=fit.samples,
            temperature=fit.temperature,
            top_p=fit.top_p,
            cascade=self.cascade(),
            equivalence=equivalence,
            locator=fit.locator,
        )

    @property
    def version(self) -> str:
        """This calibration's identity: ``"cal-"`` and 12 hex digits of the SHA-256 of its JSON. Equal
        contents (a file and its copy) have the same version; any change (a refitted threshold) a new one.
        Verdicts and review records name the version that judged them."""
        digest = hashlib.sha256(self.model_dump_json().encode("utf-8")).hexdigest()
        return f"cal-{digest[:12]}"

    # -- files ------------------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON atomically (temporary file, fsync, then rename); returns the path."""
        from spill_guard.review.atomic_file import atomic_text_file  # the one atomic writer of the package

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_text_file(target) as out:
            out.write(self.to_json() + "\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        """Read a calibration file; any problem raises :class:`CalibrationFileError` naming it."""
        where = os.fspath(path)
        try:
            data = Path(where).read_bytes()
        except OSError as exc:
            raise CalibrationFileError(
                f"cannot read calibration file {where!r}: {exc.strerror or exc}; check the path."
            ) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CalibrationFileError(
                f"calibration file {where!r} is not UTF-8 text ({exc.reason} at byte {exc.start}), so not a "
                "spill_guard calibration; check the path, or re-create it with spill-guard calibrate."
            ) from None
        return cls.from_json(text, where)

    @classmethod
    def from_json(cls, text: str, where: str = "<string>") -> Calibration:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalibrationFileError(
                f"calibration file {where!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                "re-create it with spill-guard calibrate."
            ) from None
        except (ValueError, RecursionError) as exc:  # an integer past Python's digit limit; absurd nesting
            raise CalibrationFileError(
                f"calibration file {where!r} is not a calibration JSON ({type(exc).__name__}: {str(exc)[:80]}); "
                "re-create it with spill-guard calibrate."
            ) from None
        if not isinstance(data, dict):
            raise CalibrationFileError(f"calibration file {where!r} holds a JSON {type(data).__name__}, not an object.")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            if isinstance(version, int) and version > SCHEMA_VERSION:
                hint = "it was written by a newer spill_guard; upgrade spill_guard to read it"
            elif version is None:
                hint = "the field is missing, so this is not a spill_guard calibration file"
            else:
                hint = "re-create it with this version's spill-guard calibrate"
            raise CalibrationFileError(
                f"calibration file {where!r} has schema_version {version!r}, this spill_guard reads "
                f"{SCHEMA_VERSION}; {hint}."
            )
        try:
            cal = cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg'][:1].lower()}{err['msg'][1:]}"
                for err in exc.errors()[:8]
            )
            raise CalibrationFileError(
                f"calibration file {where!r} is malformed ({problems}); re-create it with spill-guard calibrate."
            ) from None
        try:  # an unknown scorer or pooling would otherwise fail only when the guard first scores
            ScoreSpec(cal.scorer, cal.pooling, cal.beta)
        except SpillGuardError as exc:
            raise CalibrationFileError(f"calibration file {where!r} names an unusable score spec: {exc}") from None
        if cal.second_opinion is not None:  # a reversed band or an unknown locator would fail only at the first answer
            from spill_guard.spans import make_locator

            try:
                cal.cascade()
                make_locator(cal.second_opinion.locator)
            except SpillGuardError as exc:
                raise CalibrationFileError(
                    f"calibration file {where!r} has an unusable second_opinion: {exc}"
                ) from None
        return cal


def _packaged_name(model_name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in model_name.lower()) + ".json"


def default_calibration(model_name: str) -> Calibration | None:
    """The calibration shipped with spill_guard for ``model_name`` (e.g. ``"smollm2-135m-instruct"``), or None."""
    if not isinstance(model_name, str) or not model_name:
        return None
    resource = resources.files("spill_guard.calibration").joinpath("data", _packaged_name(model_name))
    if not resource.is_file():
        return None
    return Calibration.from_json(resource.read_text(encoding="utf-8"), f"<packaged calibration {resource.name}>")
