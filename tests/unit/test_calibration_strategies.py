"""Threshold strategies on synthetic score distributions: false-flag control, F1 optimum, direction."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from spill_guard.calibration import (
    CalibrationError,
    ConformalWarning,
    ThresholdCalibrator,
)
from spill_guard.calibration.conformal import conformal_rank, correct_needed
from spill_guard.errors import InvalidParameterError, SpillGuardError

REPS = 200


def draw(rng, n_correct, n_incorrect, shift=1.0, discrete=False):
    good = rng.normal(0.0, 1.0, n_correct)
    bad = rng.normal(shift, 1.0, n_incorrect)
    if discrete:  # heavy ties, as pooled scores of short answers can have
        good, bad = np.round(good * 2) / 2, np.round(bad * 2) / 2
    scores = np.r_[good, bad]
    labels = np.r_[np.zeros(n_correct, bool), np.ones(n_incorrect, bool)]
    return scores, labels


def fresh_false_flag_rates(strategy, alpha, n_correct, *, discrete=False, seed=0):
    """False-flag rate on 2,000 fresh correct answers, for REPS independent calibration sets."""
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(REPS):
        s, y = draw(rng, n_correct, 40, discrete=discrete)
        fitted = ThresholdCalibrator(strategy, alpha, n_boot=1).fit(s, y)
        fresh = rng.normal(0.0, 1.0, 2000)
        if discrete:
            fresh = np.round(fresh * 2) / 2
        rates.append(fitted.decide(fresh).mean())
    rates = np.array(rates)
    return rates.mean(), rates.std(ddof=1) / math.sqrt(REPS)


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
@pytest.mark.parametrize("n_correct", [40, 150])
def test_conformal_keeps_fresh_false_flags_at_or_below_target(alpha, n_correct):
    mean, se = fresh_false_flag_rates("conformal", alpha, n_correct)
    assert mean <= alpha + 3 * se
    # Not vacuous: the bound is nearly tight for continuous scores (rate >= α - 1/(n+1)).
    assert mean >= alpha - 1.0 / (n_correct + 1) - 3 * se


def test_conformal_with_heavy_ties_still_controls_false_flags():
    mean, se = fresh_false_flag_rates("conformal", 0.1, 60, discrete=True, seed=3)
    assert mean <= 0.1 + 3 * se


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_false_flag_strategy_is_exact_in_sample_and_near_target_on_fresh_data(alpha):
    rng = np.random.default_rng(1)
    for _ in range(50):
        s, y = draw(rng, 80, 40)
        fitted = ThresholdCalibrator("false-flag", alpha, n_boot=1).fit(s, y)
        assert fitted.decide(s[~y]).mean() <= alpha + 1e-12
    n = 100
    mean, se = fresh_false_flag_rates("false-flag", alpha, n, seed=2)
    # Plug-in rule: expected fresh rate is at most (⌊nα⌋ + 1)/(n + 1) for continuous scores.
    assert mean <= (math.floor(n * alpha) + 1) / (n + 1) + 3 * se


def test_false_flag_has_the_highest_recall_among_admissible_thresholds():
    rng = np.random.default_rng(5)
    for _ in range(30):
        s, y = draw(rng, 50, 30)
        fitted = ThresholdCalibrator("false-flag", 0.1, n_boot=1).fit(s, y)
        risk = fitted.risk(s)
        best = 0.0
        for t in np.r_[-np.inf, np.unique(risk)]:
            if (risk[~y] > t).mean() <= 0.1:
                best = max(best, (risk[y] > t).mean())
        assert fitted.metrics.recall == pytest.approx(best)


def test_conformal_rank_and_threshold_are_the_documented_order_statistic():
    assert conformal_rank(9, 0.1) == 9  # ⌈10 · 0.9⌉, despite 0.9 · 10 = 9.000000000000002
    assert conformal_rank(100, 0.1) == 91
    rng = np.random.default_rng(0)
    s, y = draw(rng, 100, 30)
    fitted = ThresholdCalibrator("conformal", 0.1, n_boot=1).fit(s, y)
    assert fitted.threshold == np.sort(fitted.risk(s)[~y])[90]


def test_conformal_with_too_few_correct_answers_never_flags_and_says_how_many_are_needed():
    assert correct_needed(0.05) == 19
    rng = np.random.default_rng(0)
    s, y = draw(rng, 12, 30)
    with pytest.warns(ConformalWarning, match="at least 19 correct") as rec:
        fitted = ThresholdCalibrator("conformal", 0.05, n_boot=1).fit(s, y)
    assert "there are 12" in str(rec[0].message)
    assert fitted.threshold == math.inf
    assert not fitted.decide(np.array([1e9, -1e9])).any()


def test_f1_threshold_is_the_brute_force_optimum():
    rng = np.random.default_rng(7)
    for rep in range(40):
        s, y = draw(rng, int(rng.integers(10, 60)), int(rng.integers(10, 60)), shift=float(rng.uniform(0, 2)),
                    discrete=rep % 2 == 0)
        if len(s) < 30:
            continue
        fitted = ThresholdCalibrator("f1", n_boot=1).fit(s, y)
        risk = fitted.risk(s)
        values = np.unique(risk)
        candidates = np.r_[-np.inf, values, (values[:-1] + values[1:]) / 2, values[-1] + 1]

        def f1(t):
            flag = risk > t
            tp = (flag & y).sum()
            return 2 * tp / (flag.sum() + y.sum())

        assert f1(fitted.threshold) == pytest.approx(max(f1(t) for t in candidates))
        assert fitted.metrics.f1 == pytest.approx(f1(fitted.threshold))


def test_direction_flips_on_reversed_scores_and_decisions_stay_the_same():
    rng = np.random.default_rng(11)
    s, y = draw(rng, 60, 40, shift=1.5)
    up = ThresholdCalibrator("conformal", 0.1, n_boot=1).fit(s, y)
    down = ThresholdCalibrator("conformal", 0.1, n_boot=1).fit(-s, y)
    assert (up.direction, down.direction) == (1, -1)
    assert up.raw_auroc == pytest.approx(1 - down.raw_auroc)
    assert up.raw_auroc > 0.5
    probe = rng.normal(0.5, 2, 500)
    assert (up.decide(probe) == down.decide(-probe)).all()


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        (np.arange(40.0), np.zeros(40, bool), "only one class"),
        (np.arange(40.0), np.r_[np.ones(5, bool), np.zeros(35, bool)], "5 incorrect, 35 correct"),
        (np.arange(25.0), np.r_[np.ones(12, bool), np.zeros(13, bool)], "at least 10 of each class and 30 overall"),
        (np.r_[np.arange(38.0), np.nan, np.inf], np.r_[np.ones(20, bool), np.zeros(20, bool)], "indices 38, 39"),
        (np.arange(40.0), np.ones(39, bool), "equal length"),
        (np.arange(40.0), np.full(40, 2), "0/1"),
    ],
)
def test_degenerate_data_is_refused_with_a_clear_message(scores, labels, message):
    with pytest.raises(CalibrationError, match=message) as info:
        ThresholdCalibrator("conformal", 0.1).fit(scores, labels)
    assert isinstance(info.value, SpillGuardError)


@pytest.mark.parametrize("strategy, target", [("conformal", 0.0), ("false-flag", 1.5), ("conformal", None), ("median", 0.1)])
def test_bad_strategy_or_target_is_refused(strategy, target):
    with pytest.raises(InvalidParameterError, match=repr(target) if strategy != "median" else "median"):
        ThresholdCalibrator(strategy, target)


def test_fitted_object_is_immutable():
    s, y = draw(np.random.default_rng(0), 40, 40)
    fitted = ThresholdCalibrator("conformal", 0.1, n_boot=1).fit(s, y)
    with pytest.raises(AttributeError):
        fitted.threshold = 0.0  # type: ignore[misc]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fitted.decide(s).dtype == bool
