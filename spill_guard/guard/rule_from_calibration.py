"""Where the guard's decision rule comes from: a threshold, a calibration file, or the package.

Precedence: an explicit ``threshold`` wins (with the given or default spec and locator); else
a given calibration (object or JSON path), checked against the model, spec and locator;
else the calibration packaged for the model, if any (found by name, or by the model's fingerprint
when it was loaded under another name); else a clear error saying how to get one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
) -> RiskRule:
    """The :class:`RiskRule` for a guard on ``model`` (a :class:`~spill_guard.SpillModel`)."""
    wanted = _spec(spec)
    if threshold is not None:
        if calibration is not None:
            raise InvalidParameterError(
                "pass either threshold=... or calibration=..., not both: "
                "a calibration file already fixes the threshold."
            )
        return RiskRule(wanted or DEFAULT_SPEC, locator or "full", float(threshold), 1, "threshold")
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
    )
