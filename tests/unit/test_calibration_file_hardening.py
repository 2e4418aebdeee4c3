"""Issue 19, items 3, 5 and 7 on the library side: a calibration file with a NaN threshold is refused
when it is read, naming the file; a β the model does not capture is refused naming the file it came
from; a server config reads the file's contents up front; a seed torch cannot take is an
InvalidParameterError naming the value and the allowed range."""

from __future__ import annotations

import json
import math

import pytest

from spill_guard.calibration import Calibration, CalibrationFileError, default_calibration
from spill_guard.errors import InvalidParameterError


def packaged() -> dict:
    return json.loads(default_calibration("smollm2-135m-instruct").to_json())


def write(tmp_path, data: dict, name: str = "cal.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_a_nan_threshold_is_refused_when_the_file_is_read_naming_it(tmp_path):
    path = write(tmp_path, {**packaged(), "threshold": float("nan")})  # json writes NaN, which json reads back
    with pytest.raises(CalibrationFileError) as caught:
        Calibration.load(path)
    assert f"calibration file {path!r}" in str(caught.value)
    assert "the threshold is NaN" in str(caught.value) and "Infinity: never flag" in str(caught.value)
    with pytest.raises(ValueError, match="threshold is NaN"):  # built in code, too
        Calibration.model_validate({**packaged(), "threshold": math.nan})
    for threshold in (math.inf, -math.inf):  # meaningful: never / always flag
        assert Calibration.load(write(tmp_path, {**packaged(), "threshold": threshold})).threshold == threshold


def test_a_server_config_reads_the_calibration_file_before_any_load(tmp_path):
    from spill_guard.serving import GuardConfig

    path = write(tmp_path, {**packaged(), "threshold": float("nan")})
    with pytest.raises(CalibrationFileError, match="threshold is NaN") as caught:
        GuardConfig(calibration=path)
    assert repr(path) in str(caught.value)
    with pytest.raises(InvalidParameterError, match="not both"):
        GuardConfig(calibration=write(tmp_path, packaged(), "ok.json"), threshold=0.5)


@pytest.mark.model
def test_an_uncaptured_beta_is_refused_naming_the_calibration_file(tmp_path, spill_model):
    from spill_guard import SpillGuard

    path = write(tmp_path, {**packaged(), "beta": 0.5})
    with pytest.raises(InvalidParameterError, match="does not capture") as caught:
        SpillGuard(spill_model, calibration=path)
    assert path in str(caught.value) and "extra_betas=(0.5,)" in str(caught.value)


# -- item 3: seeds in the library --------------------------------------------------------------
@pytest.mark.model
def test_a_seed_out_of_range_is_an_invalid_parameter_error(spill_model):
    for seed in (2**70, 2**64, 2**63, -1, -(2**63) - 1):
        with pytest.raises(InvalidParameterError) as caught:
            spill_model.generate("What is 2+2?", do_sample=True, seed=seed, max_new_tokens=2)
        message = str(caught.value)
        assert f"seed={seed} is out of range" in message and f"from 0 to {2**63 - 1}" in message
    kwargs = dict(do_sample=True, temperature=1.0, seed=2**63 - 1, max_new_tokens=4)  # the bound itself works
    [a] = spill_model.generate("Name a colour.", **kwargs)
    [b] = spill_model.generate("Name a colour.", **kwargs)
    assert a.answer_ids == b.answer_ids
