"""From a :class:`CalibrationSet` to a saved-ready :class:`Calibration`: score, (select), fit, record.

>>> cset = from_bench(sm, ["bench/out/capitals-dev"])
>>> cal = calibrate(sm, cset, strategy="conformal", target=0.1)
>>> cal.save("capitals.json")
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from spill_guard.calibration.calibrator import FittedThreshold, ThresholdCalibrator
from spill_guard.calibration.cascade import check_budget, fit_cascade
from spill_guard.calibration.consistency import Consistency, draw_samples
from spill_guard.calibration.data import CalibrationSet
from spill_guard.calibration.errors import CalibrationError
from spill_guard.calibration.file import Calibration, SecondOpinionFit
from spill_guard.calibration.fingerprint import fingerprint
from spill_guard.calibration.select import SELECT_LOCATORS, select_config
from spill_guard.errors import InvalidParameterError
from spill_guard.models.params import GenerationParams
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
    second_opinion: Consistency | None = None,
    budget: float = 0.5,
    max_new_tokens: int = 48,
    batch_size: int = 8,
) -> Calibration:
    """Fit a threshold for ``spec`` on ``locator``'s spans (or the ``select``-ed pair) and record it.

    ``spill_model`` supplies the model/tokenizer/prompt fingerprint written to the file.

    ``second_opinion``: a :class:`Consistency` (its ``cascade`` is ignored: it is fitted here). Every
    labelled answer's question is sampled ``second_opinion.samples`` times (``max_new_tokens`` each,
    ``batch_size`` questions per call), the band and weight are chosen with
    :func:`~spill_guard.calibration.cascade.fit_cascade` (at most ``budget`` of answers sampled), and the
    threshold is fitted on the final risk by the same strategy, so its statement (e.g. conformal: false-flag
    rate <= target) is about the final risk. The band is chosen on the same answers the threshold is fitted on.
    Where no band beats one pass, the calibration keeps one pass and says so in a warning.
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
    opinion = None
    if second_opinion is not None:
        fitted, opinion = _with_second_opinion(
            spill_model, cset, subset, fitted, calibrator, second_opinion, budget, max_new_tokens, batch_size
        )
    return fitted.to_calibration(
        **fingerprint(spill_model),
        spec=spec,
        locator=locator,
        data_source=cset.source,
        n_skipped=subset.n_skipped,
        selection=selection,
        second_opinion=opinion,
    )


def _with_second_opinion(
    spill_model: Any,
    cset: CalibrationSet,
    subset: Any,
    one_pass: FittedThreshold,
    calibrator: ThresholdCalibrator,
    consistency: Consistency,
    budget: float,
    max_new_tokens: int,
    batch_size: int,
) -> tuple[FittedThreshold, SecondOpinionFit | None]:
    """Sample every labelled question, fit the cascade, and refit the threshold on the final risk."""
    if not isinstance(consistency, Consistency):
        raise InvalidParameterError(f"second_opinion must be a Consistency(samples=...), got {consistency!r}.")
    budget = check_budget(budget)  # before the samples are drawn
    by_key = {a.key: a for a in cset.answers}
    kept = [by_key[k] for k in subset.keys]
    samples = draw_samples(
        spill_model,
        [a.answer.prompt_ids for a in kept],
        consistency,
        GenerationParams(max_new_tokens=max_new_tokens),
        batch_size=batch_size,
    )
    agreement = np.array(
        [consistency.compare(a.answer.answer, drawn, a.question).agreement for a, drawn in zip(kept, samples)]
    )
    risk = one_pass.direction * np.asarray(subset.scores, dtype=float)
    fit = fit_cascade(risk, agreement, subset.labels, budget=budget)
    if fit.cascade is None:
        warnings.warn(
            f"no band of one-pass risk sampling at most {budget:.0%} of answers beat one pass on these "
            f"{len(kept)} answers (one-pass AUROC {fit.one_pass_auroc:.3f}, consistency alone "
            f"{fit.consistency_auroc:.3f}): the calibration keeps one pass, without a second opinion.",
            UserWarning,
            stacklevel=3,
        )
        return one_pass, None
    final = calibrator.fit(fit.cascade.scores(risk, agreement), subset.labels)
    if final.metrics.recall < one_pass.metrics.recall:  # a better ranking can still cost flags at this target
        warnings.warn(
            f"with the second opinion the threshold flags fewer wrong answers on these data (recall "
            f"{final.metrics.recall:.3f} vs {one_pass.metrics.recall:.3f} for one pass at the same target), although "
            f"it ranks them better (AUROC {fit.auroc:.3f} vs {fit.one_pass_auroc:.3f}): correct answers whose samples "
            "disagree sit at the top of the band and lift the threshold. Compare both before rolling it out.",
            UserWarning,
            stacklevel=3,
        )
    if final.direction != 1:  # cannot happen when the cascade beats one pass, whose risk ranks the right way
        raise InvalidParameterError("the second opinion's final risk ranks correct answers as riskier; keep one pass.")
    record = SecondOpinionFit(
        samples=consistency.samples,
        temperature=float(consistency.temperature),
        top_p=float(consistency.top_p),
        locator=consistency.locator,
        equivalence="judge" if consistency.equivalence is None else "custom",
        low=fit.cascade.low,
        high=fit.cascade.high,
        weight=fit.cascade.weight,
        budget=float(budget),
        sampled_share=fit.sampled_share,
        one_pass_auroc=fit.one_pass_auroc,
        auroc=fit.auroc,
        consistency_auroc=fit.consistency_auroc,
        max_new_tokens=max_new_tokens,
    )
    # The file's direction orients the raw score into the one-pass risk; its threshold is on the final risk.
    return dataclasses.replace(final, direction=one_pass.direction, raw_auroc=one_pass.raw_auroc), record
