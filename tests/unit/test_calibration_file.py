"""Calibration files: exact round-trip, clear rejection of bad files, compatibility checks, packaged default."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from spill_guard.calibration import (
    Calibration,
    CalibrationFileError,
    CalibrationMismatchError,
    CalibrationMismatchWarning,
    DataSource,
    PromptInfo,
    ThresholdCalibrator,
    TokenizerInfo,
    default_calibration,
)
from spill_guard.calibration.fingerprint import short_hash, tokenizer_info

TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"


class FakeTokenizer:
    """Just what the fingerprint reads: a vocabulary, a name and a chat template."""

    def __init__(self, vocab, template=TEMPLATE):
        self._vocab = vocab
        self.name_or_path = "/some/machine/path"
        self.chat_template = template

    def get_vocab(self):
        return dict(self._vocab)

    def __len__(self):
        return len(self._vocab)


def fake_model(name="tiny-model", vocab=None, instruction="Answer briefly.", system=None, template=TEMPLATE):
    tok = FakeTokenizer(vocab or {"a": 0, "b": 1, "c": 2}, template)
    return SimpleNamespace(loaded=SimpleNamespace(name=name), tokenizer=tok, instruction=instruction, system=system)


def make_calibration(strategy="conformal", target=0.1, flip=False, seed=0):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(0, 1, 60), rng.normal(1.5, 1, 40)]
    y = np.r_[np.zeros(60, bool), np.ones(40, bool)]
    fitted = ThresholdCalibrator(strategy, target, n_boot=50).fit(-s if flip else s, y)
    sm = fake_model()
    return fitted.to_calibration(
        model=sm.loaded.name, tokenizer=tokenizer_info(sm.tokenizer),
        prompt=PromptInfo(instruction="Answer briefly.", system=None, chat_template_hash=short_hash(TEMPLATE)),
        spec="spilled_energy:mean", locator="full",
        data_source=DataSource(kind="arrays", detail="synthetic normal scores"),
    )


def test_save_load_round_trips_exactly(tmp_path):
    cal = make_calibration()
    loaded = Calibration.load(cal.save(tmp_path / "sub" / "cal.json"))
    assert loaded == cal
    assert loaded.threshold == cal.threshold and loaded.metrics.auroc_ci == cal.metrics.auroc_ci


def test_infinite_threshold_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    s = np.r_[rng.normal(0, 1, 12), rng.normal(1, 1, 30)]
    y = np.r_[np.zeros(12, bool), np.ones(30, bool)]
    with pytest.warns(UserWarning):
        fitted = ThresholdCalibrator("conformal", 0.02, n_boot=10).fit(s, y)
    cal = make_calibration().model_copy(update={"threshold": fitted.threshold})
    assert Calibration.load(cal.save(tmp_path / "inf.json")).threshold == math.inf
    assert cal.decide(1e300) is False


def test_risk_and_decide_follow_the_learned_direction():
    cal = make_calibration(flip=True)
    assert cal.direction == -1
    assert cal.risk(2.0) == -2.0
    scores = np.array([-5.0, 5.0])
    assert cal.decide(scores).tolist() == [True, False]  # low raw score = risky when direction is -1
    assert cal.decide(-5.0) is True
    assert cal.spec == "spilled_energy:mean"


def write(tmp_path, content):
    path = tmp_path / "cal.json"
    path.write_text(content, encoding="utf-8")
    return path


def test_bad_json_is_rejected_naming_file_and_position(tmp_path):
    path = write(tmp_path, '{"schema_version": 1,,}')
    with pytest.raises(CalibrationFileError, match=r"cal\.json.*not valid JSON \(line 1, column"):
        Calibration.load(path)


def test_missing_field_is_rejected_naming_the_field(tmp_path):
    data = json.loads(make_calibration().to_json())
    del data["threshold"]
    del data["sample"]["n_correct"]
    with pytest.raises(CalibrationFileError, match=r"threshold: field required.*sample\.n_correct: field required"):
        Calibration.load(write(tmp_path, json.dumps(data)))


@pytest.mark.parametrize("version, hint", [(99, "newer spill_guard; upgrade"), (None, "missing"), (0, "re-create")])
def test_wrong_schema_version_is_rejected(tmp_path, version, hint):
    data = json.loads(make_calibration().to_json())
    if version is None:
        del data["schema_version"]
    else:
        data["schema_version"] = version
    with pytest.raises(CalibrationFileError, match=hint):
        Calibration.load(write(tmp_path, json.dumps(data)))


def test_wrong_type_unknown_field_non_object_and_missing_file_are_rejected(tmp_path):
    data = json.loads(make_calibration().to_json())
    data["direction"] = 2
    with pytest.raises(CalibrationFileError, match="direction"):
        Calibration.load(write(tmp_path, json.dumps(data)))
    data = json.loads(make_calibration().to_json())
    data["thresold"] = 1.0
    with pytest.raises(CalibrationFileError, match="thresold"):
        Calibration.load(write(tmp_path, json.dumps(data)))
    with pytest.raises(CalibrationFileError, match="JSON list"):
        Calibration.load(write(tmp_path, "[]"))
    with pytest.raises(CalibrationFileError, match="cannot read.*nowhere.json"):
        Calibration.load(tmp_path / "nowhere.json")


def test_non_utf8_calibration_file_is_a_calibration_file_error_naming_it(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(make_calibration().to_json().replace('"detail"', '"d\u00e9tail"').encode("latin-1"))
    with pytest.raises(CalibrationFileError, match=r"latin1\.json.*not UTF-8"):
        Calibration.load(path)


def test_calibration_file_nested_too_deep_or_with_a_huge_integer_is_a_calibration_file_error(tmp_path):
    with pytest.raises(CalibrationFileError, match="cal.json"):
        Calibration.load(write(tmp_path, "[" * 100_000 + "]" * 100_000))
    with pytest.raises(CalibrationFileError, match="cal.json"):
        Calibration.load(write(tmp_path, '{"schema_version": ' + "9" * 5000 + "}"))


def test_calibration_file_with_an_unknown_scorer_is_rejected_at_load(tmp_path):
    data = json.loads(make_calibration().to_json())
    data["scorer"] = "no_such_scorer"
    with pytest.raises(CalibrationFileError, match="unknown scorer 'no_such_scorer'"):
        Calibration.load(write(tmp_path, json.dumps(data)))


def test_compatible_model_spec_and_locator_pass():
    cal = make_calibration()
    assert cal.check_compatible(fake_model(), "spilled_energy:mean", "full") == {}
    assert cal.check_compatible(fake_model()) == {}


def test_mismatches_are_listed_field_by_field_with_the_fix():
    cal = make_calibration()
    other = fake_model(name="other-model", vocab={"a": 0, "b": 1, "d": 2}, system="Be terse.")
    with pytest.raises(CalibrationMismatchError) as info:
        cal.check_compatible(other, "nll:sum", "answer_is")
    msg = str(info.value)
    for expected in ("model: calibrated 'tiny-model', got 'other-model'", "tokenizer.vocab_hash", "prompt.system",
                     "scorer: calibrated 'spilled_energy', got 'nll'", "pooling", "locator: calibrated 'full', got 'answer_is'",
                     "recalibrate", "override=True"):
        assert expected in msg
    assert "tokenizer.vocab_size" not in info.value.mismatches  # same size, different tokens
    assert set(info.value.mismatches) >= {"model", "tokenizer.vocab_hash", "prompt.system", "scorer", "pooling", "locator"}


def test_beta_and_chat_template_mismatch_and_override_warns():
    cal = make_calibration()
    with pytest.raises(CalibrationMismatchError, match="beta: calibrated 1.0, got 0.5"):
        cal.check_compatible(fake_model(), "spilled_energy:mean@0.5", "full")
    with pytest.raises(CalibrationMismatchError, match="chat_template_hash"):
        cal.check_compatible(fake_model(template=None))
    with pytest.warns(CalibrationMismatchWarning, match="instruction"):
        found = cal.check_compatible(fake_model(instruction=None), override=True)
    assert found == {"prompt.instruction": ("Answer briefly.", None)}


def test_packaged_default_calibration_of_the_embedded_model():
    cal = default_calibration("smollm2-135m-instruct")
    assert cal is not None
    assert (cal.spec, cal.locator, cal.strategy, cal.target) == ("spilled_energy:mean", "full", "conformal", 0.1)
    assert cal.data_source.split == "dev" and cal.sample.n >= 300 - cal.sample.n_skipped
    assert cal.sample.n_correct >= 20 and cal.sample.n_incorrect >= 20
    assert math.isfinite(cal.threshold)
    assert cal.metrics.false_flag_rate <= 0.1
    assert default_calibration("no-such-model") is None
    assert default_calibration("") is None


@pytest.mark.model
def test_packaged_default_matches_the_embedded_model(spill_model):
    cal = default_calibration(spill_model.loaded.name)
    assert cal.check_compatible(spill_model, "spilled_energy:mean", "full") == {}
    [ans] = spill_model.generate("What is the capital of France?", max_new_tokens=16)
    assert isinstance(cal.decide(ans.score(cal.spec)), bool)


def test_a_mismatching_calibration_file_is_named_in_the_guard_rule_error(tmp_path):
    from spill_guard.guard.rule_from_calibration import resolve_rule

    path = write(tmp_path, make_calibration().to_json())
    other = fake_model(name="other-model")
    with pytest.raises(CalibrationMismatchError, match="model: calibrated 'tiny-model'") as info:
        resolve_rule(other, threshold=None, calibration=path, spec=None, locator=None, override=False)
    assert str(path) in str(info.value) and "model" in info.value.mismatches
    with pytest.raises(CalibrationMismatchError) as info:  # an in-memory calibration has no file to name
        resolve_rule(other, threshold=None, calibration=make_calibration(), spec=None, locator=None, override=False)
    assert "calibration file" not in str(info.value)
