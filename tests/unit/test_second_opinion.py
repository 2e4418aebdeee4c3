"""The second opinion's core, on hand-built numbers: the cascade's final risk (brute force and properties), its
fit on a dev split, and Consistency's sampling params and agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spill_guard.calibration.cascade import Cascade, fit_cascade
from spill_guard.calibration.consistency import Consistency, same_answer
from spill_guard.errors import InvalidParameterError
from spill_guard.evaluation.metrics import auroc
from spill_guard.models.params import GenerationParams
from spill_guard.policy.strategies import Resample


def test_final_risk_by_hand():
    c = Cascade(low=1.0, high=3.0, weight=0.5)
    # t = (2.5 - 1) / 2 = 0.75; inconsistency 1 - 0.2 = 0.8; final = 1 + 2 * (0.5 * 0.75 + 0.5 * 0.8) = 2.55
    assert c.combine(2.5, 0.2) == pytest.approx(2.55)
    assert c.combine(1.0, 1.0) == 1.0 and c.combine(3.0, 0.0) == 3.0
    assert Cascade(1.0, 3.0, 0.0).combine(2.2, 0.0) == pytest.approx(2.2)  # weight 0: the one-pass risk
    assert Cascade(1.0, 3.0, 1.0).combine(2.9, 1.0) == 1.0  # weight 1: agreement alone orders the band
    np.testing.assert_allclose(
        c.scores([0.0, 2.5, 4.0, math.nan], [math.nan, 0.2, math.nan, math.nan]), [0.0, 2.55, 4.0, math.nan]
    )
    assert c.sampled([0.0, 1.0, 2.0, 3.0, 3.5]).tolist() == [False, True, True, True, False]


@given(
    low=st.floats(-5, 5),
    width=st.floats(0.01, 5),
    weight=st.floats(0, 1),
    t1=st.floats(0, 1),
    t2=st.floats(0, 1),
    a1=st.floats(0, 1),
    a2=st.floats(0, 1),
)
def test_final_risk_stays_in_the_band_and_is_monotone(low, width, weight, t1, t2, a1, a2):
    c = Cascade(low, low + width, weight)
    r1, r2 = low + width * t1, low + width * t2
    f = c.combine(min(r1, c.high), a1)
    assert c.low - 1e-9 <= f <= c.high + 1e-9  # answers outside the band keep their rank against it
    if r1 <= r2:
        assert c.combine(min(r1, c.high), a1) <= c.combine(min(r2, c.high), a1) + 1e-9
    if a1 >= a2:  # more agreement, no more risk
        assert c.combine(min(r1, c.high), a1) <= c.combine(min(r1, c.high), a2) + 1e-9


def test_cascade_refuses_bad_values():
    with pytest.raises(InvalidParameterError, match="above high"):
        Cascade(2.0, 1.0, 0.5)
    with pytest.raises(InvalidParameterError, match=r"\[0, 1\]"):
        Cascade(0.0, 1.0, 1.5)
    with pytest.raises(InvalidParameterError, match="finite"):
        Cascade(0.0, math.inf, 0.5)
    with pytest.raises(InvalidParameterError, match="outside the band"):
        Cascade(0.0, 1.0, 0.5).combine(2.0, 0.5)
    with pytest.raises(InvalidParameterError, match="agreement"):
        Cascade(0.0, 1.0, 0.5).scores([0.5], [math.nan])


def synthetic(n: int, seed: int):
    """One-pass risk sure at the ends and noise in the middle; agreement informative everywhere."""
    rng = np.random.default_rng(seed)
    incorrect = rng.random(n) < 0.5
    risk = np.where(incorrect, rng.normal(1.0, 1.0, n), rng.normal(-1.0, 1.0, n))
    middle = np.abs(risk) < 0.7
    risk[middle] = rng.uniform(-0.7, 0.7, middle.sum())  # the unsure middle says nothing
    agreement = np.clip(np.where(incorrect, rng.normal(0.35, 0.2, n), rng.normal(0.75, 0.2, n)), 0, 1)
    return risk, agreement, incorrect


def test_fit_chooses_a_band_that_helps_within_the_budget_and_it_holds_on_another_split():
    dev, test = synthetic(600, 1), synthetic(600, 2)
    fit = fit_cascade(*dev, budget=0.5)
    assert fit.cascade is not None
    assert fit.sampled_share <= 0.5 and fit.auroc > fit.one_pass_auroc + 0.02
    risk, agreement, incorrect = test
    cascade = fit.cascade
    held_out = auroc(cascade.scores(risk, np.where(cascade.sampled(risk), agreement, np.nan)), incorrect)
    assert held_out > auroc(risk, incorrect) + 0.01 and cascade.sampled(risk).mean() <= 0.6
    tight = fit_cascade(*dev, budget=0.1)
    assert tight.cascade is None or tight.sampled_share <= 0.1


def test_fit_keeps_one_pass_when_the_samples_say_nothing():
    rng = np.random.default_rng(3)
    incorrect = rng.random(400) < 0.5
    risk = np.where(incorrect, rng.normal(1.0, 1.0, 400), rng.normal(-1.0, 1.0, 400))  # informative everywhere
    fit = fit_cascade(risk, np.full(400, 0.5), incorrect)
    assert fit.cascade is None and fit.auroc == fit.one_pass_auroc and fit.sampled_share == 0.0


def test_fit_refuses_unusable_data():
    with pytest.raises(InvalidParameterError, match="both correct and incorrect"):
        fit_cascade([0.1, 0.2], [0.5, 0.5], [True, True])
    with pytest.raises(InvalidParameterError, match="budget"):
        fit_cascade([0.1, 0.2], [0.5, 0.5], [True, False], budget=0)
    with pytest.raises(InvalidParameterError, match="one length"):
        fit_cascade([0.1, 0.2], [0.5], [True, False])


def test_samples_are_seeded_as_the_retries_a_resample_would_draw():
    params = GenerationParams(max_new_tokens=24, seed=41)
    drawn = Consistency(samples=3, temperature=0.8).sample_params(params)
    assert [p.seed for p in drawn] == [43, 44, 45]  # retry attempts 2, 3, 4 of seed 41
    assert all(p.temperature == 0.8 and p.max_new_tokens == 24 for p in drawn)
    resample = Resample(temperature=0.8, top_p=1.0)
    assert [resample.next_attempt(None, params, k)[1] for k in (2, 3, 4)] == drawn  # type: ignore[arg-type]
    assert Consistency(samples=2).sample_params(GenerationParams()) == Consistency(samples=2).sample_params(
        GenerationParams()
    )


def test_agreement_uses_the_projects_normaliser_and_judge():
    c = Consistency(samples=4)
    assert same_answer("Paris", "paris, France") and same_answer("The Beatles", "Beatles")
    assert not same_answer("1969", "1970") and not same_answer("Paris", "...")
    assert c.agreement("Paris", ["Paris.", "Lyon", "paris", None]) == 0.5
    assert c.agreement(None, ["Paris"]) == 0.0
    loose = Consistency(samples=2, equivalence=lambda a, b: a[0].lower() == b[0].lower())
    assert loose.agreement("Paris", ["Prague", "Lyon"]) == 0.5
    with pytest.raises(InvalidParameterError, match="at least one"):
        c.agreement("Paris", [])


def test_consistency_refuses_bad_settings_and_asks_only_inside_its_band():
    for bad in ({"samples": 0}, {"samples": 2.5}, {"temperature": 0}, {"temperature": True},
                {"temperature": math.inf}, {"top_p": 0}, {"cascade": (0, 1)}):
        with pytest.raises(InvalidParameterError):
            Consistency(**bad)
    banded = Consistency(cascade=Cascade(-1.0, 0.5, 0.5))
    assert banded.wanted(0.0) and not banded.wanted(0.6) and not banded.wanted(None) and not banded.wanted(math.nan)
    assert Consistency().wanted(123.0) and not Consistency().wanted(None)


def test_the_compared_part_of_an_answer_is_located_first():
    c = Consistency(samples=2)
    assert c.span("The capital of France is Paris.") == "Paris"
    assert c.agreement(c.span("The capital of France is Paris."), [c.span("It is Paris."), c.span("Lyon.")]) == 0.5
    whole = Consistency(samples=2, locator="full")
    assert whole.span("The capital of France is Paris.") == "The capital of France is Paris."
    with pytest.raises(InvalidParameterError, match="unknown locator"):
        Consistency(locator="nowhere")


def test_one_sampling_check_names_the_field_or_the_option():
    from spill_guard.calibration.consistency import check_sampling

    with pytest.raises(InvalidParameterError, match=r"^Consistency samples must be .* got 0; 5 is a good start"):
        Consistency(samples=0)
    with pytest.raises(InvalidParameterError, match=r"^--k \(samples per question\) must .* got 65; e.g. --k 5"):
        check_sampling(65, None, samples_option="--k")
    with pytest.raises(InvalidParameterError, match=r"^--t must be in \(0, 10\], got nan: .*; e.g. --t [0-9]"):
        check_sampling(None, math.nan, temperature_option="--t")
    check_sampling(None, None)  # neither given: nothing to check
