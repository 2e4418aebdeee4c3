"""From a :class:`CalibrationSet` to a saved-ready :class:`Calibration`: score, (select), fit, record.

>>> cset = from_bench(sm, ["bench/out/capitals-dev"])
>>> cal = calibrate(sm, cset, strategy="conformal", target=0.1)
>>> cal.save("capitals.json")
"""

from __future__ import annotations

from typing import Any

from spill_guard.calibration.calibrator import ThresholdCalibrator
from spill_guard.calibration.data import CalibrationSet
from spill_guard.calibration.errors import CalibrationError
from spill_guard.calibration.file import Calibration
from spill_guard.calibration.fingerprint import fingerprint
from spill_guard.calibration.select import SELECT_LOCATORS, select_config
from spill_guard.scoring.specs import DEFAULT_SPEC, ScoreSpec


def calibrate(
    spill_model: Any,
    cset: CalibrationSet,
    *,
    spec: ScoreSpec | str = DEFAULT_SPEC,
    locator: str = "full",
    strategy: str = "conformal",
    target: float | None = 0.1,
    select: bool = False,
    k: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
) -> Calibration:
    """Fit a threshold for ``spec`` on ``locator``'s spans (or the ``select``-ed pair) and record it.

    ``spill_model`` supplies the model/tokenizer/prompt fingerprint written to the file.
    """
    spec = ScoreSpec.parse(spec) if isinstance(spec, str) else spec
    calibrator = ThresholdCalibrator(
        strategy, target, n_boot=n_boot, seed=seed
    )  # bad strategy/target fail before scoring
    selection = None
    if select:
        locators = SELECT_LOCATORS if locator in SELECT_LOCATORS else (*SELECT_LOCATORS, locator)
        selection = select_config(cset, locators=locators, k=k)
        spec, locator = ScoreSpec.parse(selection.chosen.spec), selection.chosen.locator
    subset = cset.scores(spec, locator)
    if len(subset.scores) == 0:
        raise CalibrationError(
            f"locator {locator!r} found no span in any of the {len(cset)} answers, so {spec.name} has no scores; "
            "choose another --locator."
        )
    fitted = calibrator.fit(subset.scores, subset.labels)
    return fitted.to_calibration(
        **fingerprint(spill_model),
        spec=spec,
        locator=locator,
        data_source=cset.source,
        n_skipped=subset.n_skipped,
        selection=selection,
    )
