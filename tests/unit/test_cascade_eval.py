"""``spill_guard.calibration.cascade_eval`` (``bench --second-opinion``) without a model.

Cross-fitting is checked against a brute-force re-implementation (its own fold rule, its own
fit per fold), and by flipping a fold's labels: a held-out fold's final risks never change with
its own labels. The sample cache is driven by a fake model that counts its calls.
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest

from spill_guard.calibration import SecondOpinionFit, default_calibration
from spill_guard.calibration.cascade import Cascade, fit_cascade
from spill_guard.calibration.cascade_eval import (
    FOLDS,
    DefaultRisks,
    SecondOpinionSetup,
    apply_cascade,
    cached_samples,
    cross_fit,
    fold_of,
    measure,
    sample_cache_path,
    second_opinion_setup,
)
from spill_guard.calibration.consistency import DEFAULT_TEMPERATURE, Consistency
from spill_guard.cli.main import main
from spill_guard.errors import InvalidInputError, InvalidParameterError
from spill_guard.evaluation.metrics import auroc, auroc_ci
from spill_guard.spill_model import SpillModel
from spill_guard.tasks import TaskItem


def brute_fold(item_id: str) -> int:
    return int(hashlib.sha256(item_id.encode()).hexdigest()[:16], 16) % 5


def synthetic(n: int = 240, seed: int = 7):
    """Risks that rank well at the ends and badly in the middle, where agreement knows better."""
    rng = np.random.default_rng(seed)
    ids = [f"item-{i}" for i in range(n)]
    incorrect = rng.random(n) < 0.5
    risk = np.where(incorrect, 1.0, -1.0) + rng.normal(0, 1.0, n)
    agreement = np.clip(np.where(incorrect, 0.3, 0.8) + rng.normal(0, 0.15, n), 0, 1)
    agreement = np.round(agreement * 5) / 5  # K = 5 samples
    return ids, risk, agreement, incorrect


def test_fold_of_is_the_sha256_rule_and_uses_every_fold():
    ids = [f"q{i}" for i in range(500)] + ["é", "", "capitals/17"]
    assert [fold_of(i) for i in ids] == [brute_fold(i) for i in ids]
    counts = np.bincount([fold_of(i) for i in ids], minlength=FOLDS)
    assert counts.min() > 60  # roughly balanced
    assert fold_of("q1", 3) == int(hashlib.sha256(b"q1").hexdigest()[:16], 16) % 3


def test_cross_fit_equals_brute_force_fit_on_the_other_folds():
    ids, risk, agreement, incorrect = synthetic()
    fitted = cross_fit(ids, risk, agreement, incorrect, budget=0.5)
    folds = np.array([brute_fold(i) for i in ids])
    assert (fitted.folds == folds).all()
    expected = risk.copy()
    expected_sampled = np.zeros(len(ids), dtype=bool)
    for f in range(5):
        train, held = folds != f, folds == f
        cascade = fit_cascade(risk[train], agreement[train], incorrect[train], budget=0.5).cascade
        assert cascade == fitted.cascades[f]
        if cascade is not None:
            inside = (risk[held] >= cascade.low) & (risk[held] <= cascade.high)
            expected_sampled[held] = inside
            expected[held] = cascade.scores(risk[held], agreement[held])
    assert any(c is not None for c in fitted.cascades)  # the check is not vacuous
    np.testing.assert_array_equal(fitted.sampled, expected_sampled)
    np.testing.assert_allclose(fitted.scores, expected)
    assert 0 < fitted.sampled.mean() <= 0.75


@pytest.mark.parametrize("fold", range(5))
def test_a_held_out_fold_never_sees_its_own_labels(fold):
    ids, risk, agreement, incorrect = synthetic()
    before = cross_fit(ids, risk, agreement, incorrect)
    held = np.array([brute_fold(i) for i in ids]) == fold
    flipped = np.where(held, ~incorrect, incorrect)
    shuffled = np.where(held, np.random.default_rng(fold).permutation(incorrect), incorrect)
    for labels in (flipped, shuffled, np.where(held, True, incorrect)):
        after = cross_fit(ids, risk, agreement, labels)
        np.testing.assert_array_equal(after.scores[held], before.scores[held])
        np.testing.assert_array_equal(after.sampled[held], before.sampled[held])
        assert after.cascades[fold] == before.cascades[fold]
    # ...while the other folds' cascades do read them (the fold is in their training data).
    others = [cross_fit(ids, risk, agreement, flipped).cascades[f] for f in range(5) if f != fold]
    assert others != [before.cascades[f] for f in range(5) if f != fold]


def test_cross_fit_with_one_class_keeps_one_pass_everywhere():
    ids, risk, agreement, _ = synthetic(60)
    fitted = cross_fit(ids, risk, agreement, np.ones(60, dtype=bool))
    assert fitted.cascades == (None,) * 5
    np.testing.assert_array_equal(fitted.scores, risk)
    assert not fitted.sampled.any()


def test_apply_cascade_reads_agreement_only_inside_the_band():
    risk = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    agreement = np.array([np.nan, 1.0, 0.0, 0.5, np.nan])  # unsampled answers have none
    scores, sampled = apply_cascade(Cascade(-1.0, 1.0, 1.0), risk, agreement)
    assert sampled.tolist() == [False, True, True, True, False]
    np.testing.assert_allclose(scores, [-2.0, -1.0, 1.0, 0.0, 2.0])
    scores, sampled = apply_cascade(None, risk, agreement)
    np.testing.assert_array_equal(scores, risk)
    assert not sampled.any()


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(risk=[0.1], agreement=[1.0, 0.5], incorrect=[True]), "of one length"),
        (dict(folds=1), "folds must be an integer >= 2"),
        (dict(budget=0.0), "budget is the largest share"),
    ],
)
def test_cross_fit_errors(args, message):
    given = dict(risk=[0.1, 0.2], agreement=[1.0, 0.5], incorrect=[True, False])
    given.update(args)
    folds = given.pop("folds", 5)
    budget = given.pop("budget", 0.5)
    with pytest.raises(InvalidParameterError, match=message):
        cross_fit(["a", "b"], **given, folds=folds, budget=budget)


# --------------------------------------------------------------------------- measure


def data_of(ids, risk, incorrect) -> DefaultRisks:
    items = [TaskItem(id=i, question="q?", answers=["a"]) for i in ids]
    return DefaultRisks(items, np.asarray(risk, dtype=float), np.asarray(incorrect, dtype=bool))


def test_measure_cross_fitted_and_consistency_only_equal_brute_force():
    ids, risk, agreement, incorrect = synthetic(120)
    tokens = np.arange(120) % 7 + 3
    setup = SecondOpinionSetup(Consistency(samples=5, temperature=0.7), budget=0.4)
    result = measure(data_of(ids, risk, incorrect), agreement, tokens, setup, n_boot=200, seed=3)
    fitted = cross_fit(ids, risk, agreement, incorrect, budget=0.4)
    assert result.auroc == pytest.approx(auroc(fitted.scores, incorrect))
    assert result.auroc_ci == pytest.approx(auroc_ci(fitted.scores, incorrect, n_boot=200, seed=3))
    assert result.sampled_fraction == pytest.approx(fitted.sampled.mean())
    assert result.extra_tokens_per_question == pytest.approx(tokens[fitted.sampled].sum() / 120)
    assert result.one_pass_auroc == pytest.approx(auroc(risk, incorrect))
    assert result.band_from == "cross-fitted:5-fold" and result.budget == 0.4
    assert (result.samples, result.temperature, result.n, result.n_positive) == (5, 0.7, 120, int(incorrect.sum()))
    assert [None if b is None else (b.low, b.high, b.weight) for b in result.bands] == [
        None if c is None else (c.low, c.high, c.weight) for c in fitted.cascades
    ]
    co = result.consistency_only
    assert co.auroc == pytest.approx(auroc(1.0 - agreement, incorrect))
    assert co.auroc_ci == pytest.approx(auroc_ci(1.0 - agreement, incorrect, n_boot=200, seed=3))
    assert co.sampled_fraction == 1.0 and co.samples == 5
    assert co.extra_tokens_per_question == pytest.approx(tokens.mean())


def calibration_with_band(low: float, high: float, weight: float = 1.0, **changes):
    fit = dict(
        samples=3,
        temperature=0.8,
        top_p=1.0,
        locator="quoted+answer_is+strip_filler",
        equivalence="judge",
        low=low,
        high=high,
        weight=weight,
        budget=0.5,
        sampled_share=0.3,
        one_pass_auroc=0.7,
        auroc=0.75,
        consistency_auroc=0.6,
        max_new_tokens=48,
    )
    fit.update(changes)
    base = default_calibration("smollm2-135m-instruct")
    assert base is not None
    return base.model_copy(update={"second_opinion": SecondOpinionFit(**fit)})


def test_measure_with_a_calibrations_band_uses_it_as_is():
    ids, risk, agreement, incorrect = synthetic(80)
    cal = calibration_with_band(-0.5, 0.5, 0.75)
    setup = SecondOpinionSetup(Consistency(samples=3, temperature=0.8), calibration=cal, calibration_path="c.json")
    tokens = np.full(80, 10)
    result = measure(data_of(ids, risk, incorrect), agreement, tokens, setup, n_boot=50)
    inside = (risk >= -0.5) & (risk <= 0.5)
    assert result.sampled_fraction == pytest.approx(inside.mean())
    assert result.auroc == pytest.approx(auroc(Cascade(-0.5, 0.5, 0.75).scores(risk, agreement), incorrect))
    assert result.extra_tokens_per_question == pytest.approx(10 * inside.mean())
    assert result.band_from == "calibration:c.json" and result.budget is None
    assert [(b.low, b.high, b.weight) for b in result.bands] == [(-0.5, 0.5, 0.75)]


def test_measure_with_one_class_reports_no_auroc():
    ids, risk, agreement, _ = synthetic(20)
    setup = SecondOpinionSetup(Consistency(samples=5), budget=0.5)
    result = measure(data_of(ids, risk, np.zeros(20, dtype=bool)), agreement, np.ones(20), setup, n_boot=20)
    assert result.auroc is None and result.auroc_ci is None and result.one_pass_auroc is None
    assert result.consistency_only.auroc is None and result.sampled_fraction == 0.0
    empty = measure(data_of([], [], []), [], [], setup, n_boot=20)
    assert empty.n == 0 and empty.auroc is None and empty.extra_tokens_per_question == 0.0


# --------------------------------------------------------------------------- options


def test_setup_defaults_and_off():
    assert second_opinion_setup(None) is None
    setup = second_opinion_setup(4)
    assert setup is not None and setup.budget == 0.5 and setup.calibration is None
    assert (setup.consistency.samples, setup.consistency.temperature, setup.consistency.cascade) == (4, DEFAULT_TEMPERATURE, None)
    assert setup.band_from == "cross-fitted:5-fold"
    setup = second_opinion_setup(2, temperature=0.5, budget=1.0, locators=["answer_is", "full"])
    assert setup is not None and (setup.consistency.temperature, setup.budget) == (0.5, 1.0)


@pytest.mark.parametrize(
    "samples, kwargs, message",
    [
        (0, {}, "--second-opinion (samples per question) must be an integer from 1 to 64, got 0"),
        (65, {}, "got 65"),
        (True, {}, "got True"),
        (3, dict(temperature=0.0), "--second-opinion-temperature must be in (0, 10], got 0.0"),
        (3, dict(temperature=float("nan")), "got nan"),
        (3, dict(temperature=11.0), "got 11.0"),
        (3, dict(budget=0.0), "--second-opinion-budget is the largest share of questions the band may sample"),
        (3, dict(budget=1.5), "got 1.5"),
        (None, dict(temperature=0.7), "--second-opinion-temperature 0.7 only applies with a second opinion"),
        (None, dict(budget=0.3), "--second-opinion-budget 0.3 only applies with a second opinion"),
        (3, dict(locators=["answer_is"]), "--locators must include full; got 'answer_is'"),
    ],
)
def test_setup_errors(samples, kwargs, message):
    with pytest.raises(InvalidParameterError) as info:
        second_opinion_setup(samples, **kwargs)
    assert message in str(info.value)


def test_setup_from_calibration(tmp_path):
    path = tmp_path / "cal.json"
    calibration_with_band(-0.4, 0.1, top_p=0.9).save(path)
    setup = second_opinion_setup(None, calibration=path)
    assert setup is not None and setup.calibration is not None and setup.budget is None
    c = setup.consistency
    assert (c.samples, c.temperature, c.top_p, c.cascade) == (3, 0.8, 0.9, None)
    assert setup.band_from == f"calibration:{path}"
    assert second_opinion_setup(3, temperature=0.8, calibration=path) is not None  # the file's own values
    assert sample_cache_path(tmp_path, c).name == "second_opinion-k3-t0.8-p0.9.jsonl"


@pytest.mark.parametrize(
    "changes, samples, kwargs, message",
    [
        (None, None, {}, "has no second_opinion (it is a one-pass calibration)"),
        ({}, 5, {}, "--second-opinion 5 differs from the 3 samples"),
        ({}, None, dict(temperature=1.0), "--second-opinion-temperature 1.0 differs from the temperature 0.8"),
        ({}, None, dict(budget=0.5), "--second-opinion-budget 0.5 chooses a cross-fitted band"),
        (dict(equivalence="custom"), None, {}, "fitted with your own equivalence"),
        ("locator", None, {}, "is calibrated for spilled_energy:mean on 'answer_is'"),
    ],
)
def test_setup_from_calibration_errors(tmp_path, changes, samples, kwargs, message):
    path = tmp_path / "cal.json"
    if changes is None:
        cal = default_calibration("smollm2-135m-instruct")
    elif changes == "locator":
        cal = calibration_with_band(-0.4, 0.1).model_copy(update={"locator": "answer_is"})
    else:
        cal = calibration_with_band(-0.4, 0.1, **changes)
    assert cal is not None
    cal.save(path)
    with pytest.raises(InvalidParameterError) as info:
        second_opinion_setup(samples, calibration=path, **kwargs)
    assert message in str(info.value) and str(path) in str(info.value)


@pytest.fixture
def no_model_load(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(SpillModel, "load", tripwire)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--second-opinion", "0"], "must be an integer from 1 to 64, got 0"),
        (["--second-opinion", "3", "--second-opinion-budget", "2"], "got 2.0"),
        (["--second-opinion-temperature", "0.5"], "only applies with a second opinion"),
        (["--second-opinion", "3", "--locators", "numeric"], "--locators must include full"),
        (["--second-opinion-calibration", "/no/such/cal.json"], "'/no/such/cal.json' does not exist"),
    ],
)
def test_cli_refuses_bad_second_opinion_options_before_the_model_loads(no_model_load, tmp_path, capsys, args, message):
    argv = ["bench", "--task", "capitals", "--no-progress", "--out", str(tmp_path / "o"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# --------------------------------------------------------------------------- the sample cache


class FakeModel:
    """Answers ``"<seed> <prompt[0]>"``, with ``1 + prompt[0] % 4 + seed`` generated tokens; counts calls."""

    def __init__(self, name: str = "fake"):
        self.loaded = SimpleNamespace(name=name, dtype="torch.float32")
        self.instruction, self.system = "Answer briefly.", None
        self.calls = 0

    def generate_params(self, prompts, params, **kwargs):
        self.calls += 1
        assert params.temperature == 0.5 and params.max_new_tokens == 9 and kwargs == {"stats": None}
        return [
            SimpleNamespace(answer=f"{params.seed} {p[0]}", answer_ids=[0] * (1 + p[0] % 4 + params.seed))
            for p in prompts
        ]


def test_cached_samples_count_tokens_resume_and_refuse_other_settings(tmp_path):
    items = [TaskItem(id=f"i{n}", question="q?", answers=["a"]) for n in range(5)]
    prompts = {f"i{n}": [n, 100] for n in range(5)}
    prompts["i4"] = [1, 100]  # the same prompt as i1: sampled once
    consistency = Consistency(samples=2, temperature=0.5)
    model = FakeModel()
    got = cached_samples(model, items, prompts, tmp_path, consistency, max_new_tokens=9, batch_size=3)
    assert model.calls == 2 * 2  # 4 distinct prompts in batches of 3, once per sample
    for item in items:
        first = prompts[item.id][0]
        assert got[item.id] == ([f"2 {first}", f"3 {first}"], [1 + first % 4 + 2, 1 + first % 4 + 3])
    path = sample_cache_path(tmp_path, consistency)
    assert path.name == "second_opinion-k2-t0.5.jsonl"
    text = path.read_text()
    assert len(text.splitlines()) == 1 + 4

    again = FakeModel()
    assert cached_samples(again, items, prompts, tmp_path, consistency, max_new_tokens=9, batch_size=3) == got
    assert again.calls == 0 and path.read_text() == text

    with pytest.raises(InvalidInputError, match="model differ"):
        cached_samples(FakeModel("other"), items, prompts, tmp_path, consistency, max_new_tokens=9, batch_size=3)

    lines = text.splitlines()
    entry = json.loads(lines[1])
    entry["value"]["tokens"] = ["x", 1]
    path.write_text("\n".join([lines[0], json.dumps(entry), *lines[2:]]) + "\n")
    with pytest.raises(InvalidInputError, match="malformed"):
        cached_samples(FakeModel(), items, prompts, tmp_path, consistency, max_new_tokens=9, batch_size=3)
