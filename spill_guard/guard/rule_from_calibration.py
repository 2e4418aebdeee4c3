"""Where the guard's decision rule comes from: a threshold, a calibration file, or the package.

Precedence: an explicit ``threshold`` wins (with the given or default spec and locator); else
a given calibration (object or JSON path), checked against the model, spec and locator;
else the calibration packaged for the model, if any (found by name, or by the model's fingerprint
when it was loaded under another name); else a clear error saying how to get one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from spill_guard.calibration.consistency import Consistency
from spill_guard.errors import InvalidParameterError
from spill_guard.guard.risk_rule import RiskRule
from spill_guard.scoring.specs import DEFAULT_SPEC, ScoreSpec


def _spec(spec: ScoreSpec | str | None) -> ScoreSpec | None:
    if spec is None or isinstance(spec, ScoreSpec):
        return spec
    return ScoreSpec.parse(spec)


def resolve_rule(
    model: Any,
    *,
    threshold: float | None,
    calibration: Any,
    spec: ScoreSpec | str | None,
    locator: str | None,
    override: bool,
    second_opinion: Consistency | None = None,
) -> RiskRule:
    """The :class:`RiskRule` for a guard on ``model`` (a :class:`~spill_guard.SpillModel`).

    ``second_opinion``: the guard's own :class:`Consistency` (with its cascade), or None. A calibration
    fitted with a second opinion brings its own (its threshold is on that cascade's final risk); one given
    as well must sample as the file says (samples, temperature, top_p, locator) and may only add an
    equivalence of answers.
    """
    if second_opinion is not None and not isinstance(second_opinion, Consistency):
        raise InvalidParameterError(
            f"second_opinion must be a Consistency(...) from spill_guard, got {second_opinion!r}."
        )
    wanted = _spec(spec)
    if threshold is not None:
        if calibration is not None:
            raise InvalidParameterError(
                "pass either threshold=... or calibration=..., not both: "
                "a calibration file already fixes the threshold."
            )
        return RiskRule(
            wanted or DEFAULT_SPEC, locator or "full", float(threshold), 1, "threshold", second_opinion=second_opinion
        )
    from spill_guard.calibration import Calibration
    from spill_guard.calibration.errors import CalibrationMismatchError
    from spill_guard.calibration.packaged import packaged_calibration, packaged_calibrations

    given = calibration
    if calibration is None:
        calibration = packaged_calibration(model)  # by name, else by what the model is (its fingerprint)
        if calibration is None:
            shipped = ", ".join(repr(c.model) for c in packaged_calibrations()) or "none"
            raise InvalidParameterError(
                f"no calibration is packaged for model {model.loaded.name!r} (calibrations ship for {shipped}; "
                "this model is none of them by name, weights or architecture): run `spill-guard calibrate TASK "
                "--model ... -o calibration.json` on labelled questions of your task and pass "
                "calibration='calibration.json', or pass threshold=<risk score above which to flag>."
            )
        source = f"calibration:packaged:{calibration.model}"
    elif isinstance(calibration, (str, Path)):
        source = f"calibration:{calibration}"
        calibration = Calibration.load(calibration)
    elif isinstance(calibration, Calibration):
        source = "calibration:object"
    else:
        raise InvalidParameterError(
            f"calibration must be a Calibration or the path of a calibration JSON file, got {calibration!r}."
        )
    try:
        calibration.check_compatible(model, spec=wanted, locator=locator, override=override)
    except CalibrationMismatchError as exc:
        if not isinstance(given, (str, Path)):
            raise
        raise CalibrationMismatchError(f"{exc} (calibration file: {given})", mismatches=exc.mismatches) from None
    return RiskRule.of_calibration(
        calibration,
        source,
        spec=wanted if override else None,
        locator=locator if override else None,
        second_opinion=reconcile_second_opinion(calibration, second_opinion, source),
    )


def reconcile_second_opinion(calibration: Any, given: Consistency | None, source: str) -> Consistency | None:
    """The second opinion of a guard built on ``calibration`` with ``given`` (see :func:`resolve_rule`)."""
    fit = calibration.second_opinion
    if fit is None:
        return given  # a one-pass calibration; a given second opinion brings its own band
    if given is None:
        return calibration.consistency()  # raises if the file was fitted with a custom equivalence
    fitted = (fit.samples, fit.temperature, fit.top_p, fit.locator)
    asked = (given.samples, float(given.temperature), float(given.top_p), given.locator)
    cascade = calibration.cascade()
    if asked != fitted or (given.cascade is not None and given.cascade != cascade):
        raise InvalidParameterError(
            f"the calibration ({source}) was fitted with a second opinion of {fit.samples} samples at temperature "
            f"{fit.temperature}, top_p {fit.top_p}, locator {fit.locator!r}, band [{fit.low:.4g}, {fit.high:.4g}] "
            f"weight {fit.weight}; the second_opinion given samples {given.samples} at temperature "
            f"{given.temperature}, top_p {given.top_p}, locator {given.locator!r}"
            + ("" if given.cascade is None else f", {given.cascade}")
            + ". Its threshold is only valid for the fitted one: leave second_opinion out (the file's is used), "
            "pass only an equivalence (Consistency(samples=..., equivalence=...)), or recalibrate."
        )
    return dataclasses.replace(given, cascade=cascade)
